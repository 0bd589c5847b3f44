"""Decoding stored image files (``payload: encoded``): the CPU cost that pixel stores avoid.

Why two decoders: the fastest one decides what an encoded store can deliver, and Pillow's is
shown beside it so nobody compares our best against their default. ``simplejpeg`` wraps
libjpeg-turbo with little per-call overhead; it reads only JPEG, so PNG and WebP blobs go
through Pillow whichever decoder is chosen (the table says which decoder ran).
``benchmarks/decoders.py`` keeps the measurement behind the default.

Both return (H, W, 3) uint8 RGB under the scan's policy (imgbench/data/folder.py), so a decoded
image can be compared with the same decoder's output for the original file. This module
(Pillow with it) and each decoder library are imported only by the jobs that decode.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from imgbench.core.errors import BenchError
from imgbench.data.folder import to_rgb

DECODERS = ("pillow", "simplejpeg")
#: Policy counts of decodes inside timed reads: nobody reads them (imports and this object
#: are set up once, so the timed section pays for the decode alone).
_UNCOUNTED: Counter = Counter()
JPEG_MAGIC = b"\xff\xd8\xff"


def pillow(blob: bytes | memoryview) -> np.ndarray:
    """Pillow (its bundled libjpeg-turbo, libpng, libwebp), with the scan's RGB policy (its
    counts are the scan's business: discarded here)."""
    with Image.open(io.BytesIO(blob)) as im:
        im.load()
        return np.asarray(to_rgb(im, _UNCOUNTED))


def _simplejpeg() -> Callable[[bytes | memoryview], np.ndarray]:
    try:
        import simplejpeg
    except ModuleNotFoundError:
        raise BenchError(
            "decoder simplejpeg needs the Python package simplejpeg; install it: "
            "pip install -r requirements.txt (or set decoder: pillow)"
        ) from None

    def decode(blob: bytes | memoryview) -> np.ndarray:
        if bytes(blob[:3]) != JPEG_MAGIC:
            return pillow(blob)
        try:
            return simplejpeg.decode_jpeg(blob, colorspace="RGB")
        except ValueError:  # CMYK and other JPEGs libjpeg-turbo's fast path refuses
            return pillow(blob)

    return decode


def get(name: str) -> Callable[[bytes | memoryview], np.ndarray]:
    """The decode function of *name* (one line if its library is missing)."""
    if name == "pillow":
        return pillow
    if name == "simplejpeg":
        return _simplejpeg()
    raise ValueError(f"decoder {name!r}: use one of {', '.join(DECODERS)}")


def decode_all(
    blobs: Sequence[bytes | memoryview], decode: Callable, threads: int = 1
) -> list[np.ndarray]:
    """Decode every blob, in order, with *threads* threads (the cores a tuned job gets; a
    decoder that holds the GIL simply does not scale, which the timing then shows)."""
    if threads <= 1 or len(blobs) < 2 * threads:
        return [decode(b) for b in blobs]
    step = -(-len(blobs) // (threads * 8))
    chunks = [blobs[i : i + step] for i in range(0, len(blobs), step)]
    with ThreadPoolExecutor(threads) as pool:
        parts = pool.map(lambda c: [decode(b) for b in c], chunks)
        return [im for part in parts for im in part]
