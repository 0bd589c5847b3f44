"""Your own images: a class-per-subfolder folder (torchvision's ImageFolder layout) as data.

Why: "what about my data?" is the first question after our CIFAR numbers. The folder is
untrusted input, read in three steps, each a rule:

1. :func:`scan` reads every file once: its bytes go into the data's checksum (file list +
   bytes, the identity stamped on every row) and it is decoded to check it; every policy
   case is counted, every bad file listed. With ``bad_images: fail`` the first bad file
   stops the run here, before any store is built, in one line that names it.
2. :func:`ingest` decodes the good files again and fits each to ``size`` x ``size`` RGB
   (the pixel data, ``folder<size>``), a chunk at a time into a memory-mapped output.
3. :func:`encoded_source` keeps the good files' bytes as they are (``folderenc``, for
   ``payload: encoded``); :func:`encode_cifar` makes the same for CIFAR, which has no
   original files: lossless PNG.

Labels are the sorted class folder names' indices (as ImageFolder numbers them), stored in
the narrowest unsigned type that holds them: 1,000 ImageNet classes need uint16.

Policies (counted in ``scan.json`` and the provenance): greyscale, palette and
black-and-white images become RGB losslessly; alpha is dropped (not composited); CMYK and
other colour spaces are converted by Pillow; 16-bit samples keep their high byte. EXIF
orientation is not applied (ImageFolder's PIL loader does not either). Hidden files (a
leading dot) are ignored; any other file that does not decode is bad, as is an empty class.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from imgbench.core.atomic import atomic_path, write_json
from imgbench.core.errors import DataError

log = logging.getLogger(__name__)

BAD_POLICIES = ("fail", "skip")
FITS = ("crop", "resize")
#: Files decoded per step while fitting: memory stays ~CHUNK images whatever the folder holds.
CHUNK = 1000
#: Pillow's own decompression-bomb guard, made an error: a 90-megapixel "photo" is bad input.
MAX_PIXELS = 89_478_485


def _fix(policy: str) -> str:
    if policy == "fail":
        return "remove or fix it, or set bad_images: skip to leave bad files out (listed)"
    return "remove or fix it"


def label_dtype(n_classes: int) -> np.dtype:
    """The narrowest unsigned integer type that holds labels 0 .. n_classes - 1."""
    for dt in (np.uint8, np.uint16, np.uint32):
        if n_classes - 1 <= np.iinfo(dt).max:
            return np.dtype(dt)
    raise DataError(f"{n_classes} classes: too many class folders")


def listing(images_dir: Path) -> tuple[list[str], list[tuple[str, int]]]:
    """Class names (sorted folder names) and every non-hidden file as (relative path, label),
    in ImageFolder's order: class by class, files sorted. Reads names only, no bytes: cheap
    enough for the DAG to count a folder's images while it is parsed."""
    root = Path(images_dir)
    if not root.is_dir():
        raise DataError(
            f"images_dir {root}: not a folder; point images_dir at a folder of "
            "class subfolders (train/cat/1.jpg, train/dog/2.jpg, ...)"
        )
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise DataError(
            f"images_dir {root}: no class subfolders; the layout is one subfolder "
            "per class (train/cat/1.jpg, train/dog/2.jpg, ...)"
        )
    files: list[tuple[str, int]] = []
    for label, name in enumerate(classes):
        found: list[str] = []
        for dirpath, dirnames, filenames in os.walk(root / name, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            rel = Path(dirpath).relative_to(root)
            found += [str(rel / f) for f in filenames if not f.startswith(".")]
        files += [(f, label) for f in sorted(found)]
    return classes, files


def signature(images_dir: Path, files: list[tuple[str, int]] | None = None) -> str:
    """A cheap fingerprint of the folder (names, sizes, mtimes) for the DAG: the scan reruns
    when a file is added, removed or rewritten. The checksum itself (bytes) is the scan's.
    *files*: the folder's :func:`listing`, if the caller has it (a 50,000-file walk)."""
    h = hashlib.sha256()
    root = Path(images_dir)
    for rel, label in listing(root)[1] if files is None else files:
        st = os.stat(root / rel)
        h.update(f"{rel}\0{label}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def to_rgb(im: Any, counts: Counter) -> Any:
    """One decoded Pillow image as 8-bit RGB, by the documented policy (counted)."""
    from PIL import Image

    mode = im.mode
    if mode == "RGB":
        return im
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(im)
        if a.size and (a.min() < 0 or a.max() > 0xFFFF):
            raise ValueError(f"{mode} samples outside 16 bits")
        counts["16-bit to 8-bit"] += 1
        return Image.fromarray((a.astype(np.uint32) >> 8).astype(np.uint8)).convert("RGB")
    if mode in ("1", "L", "P"):
        if mode == "P" and "transparency" in im.info:
            counts["alpha dropped"] += 1
            return im.convert("RGBA").convert("RGB")
        counts["grey or palette to RGB"] += 1
        return im.convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        counts["alpha dropped"] += 1
        return im.convert("RGBA").convert("RGB")
    if mode == "F":
        raise ValueError("32-bit float samples (mode F) have no 8-bit meaning")
    counts[f"{mode} to RGB"] += 1  # CMYK, YCbCr, LAB, HSV
    return im.convert("RGB")


def decode_file(data: bytes, counts: Counter) -> Any:
    """Decode one file's bytes fully (a truncated file fails here, not later) as RGB."""
    import io

    from PIL import Image

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return to_rgb(im, counts)


def fit(im: Any, size: int, how: str, resample: Any) -> np.ndarray:
    """*im* as a (size, size, 3) array: ``crop`` scales the short side to *size* and cuts the
    centre (torchvision's Resize + CenterCrop), ``resize`` squashes to the square."""
    w, h = im.size
    if how == "crop" and (w, h) != (size, size):
        s = size / min(w, h)
        nw, nh = max(size, round(w * s)), max(size, round(h * s))
        im = im.resize((nw, nh), resample)
        left, top = (nw - size) // 2, (nh - size) // 2
        im = im.crop((left, top, left + size, top + size))
    elif (w, h) != (size, size):
        im = im.resize((size, size), resample)
    return np.asarray(im, dtype=np.uint8)


def _bad_reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = re.sub(r" ?<_io\.BytesIO object at 0x[0-9a-f]+>", "", text)
    return f"{type(exc).__name__}: {text}"[:200]


def scan(
    images_dir: Path,
    record: Path,
    bad_images: str = "fail",
    n_images: int = 0,
    signature: str = "",
) -> None:
    """Read, checksum and decode every file once; write ``scan.json`` (classes, good files and
    their labels, bad files and why, policy counts, the checksum). *n_images*: the images the
    run needs; fewer good ones is an error that says how many there are."""
    if bad_images not in BAD_POLICIES:
        raise DataError(f"bad_images {bad_images!r}: use fail or skip")
    root = Path(images_dir)
    classes, files = listing(root)
    h = hashlib.sha256()
    counts: Counter = Counter()
    good: list[tuple[str, int]] = []
    bad: list[dict[str, str]] = []
    per_class = Counter()
    shapes: Counter = Counter()
    decoded_bytes = 0
    for rel, label in files:
        try:
            data = (root / rel).read_bytes()
        except OSError as exc:
            data, problem = b"", f"unreadable ({_bad_reason(exc)})"
        else:
            problem = ""
        h.update(f"{len(rel.encode())}:{rel}\0{label}\0{len(data)}\0".encode())
        h.update(data)
        if not problem:
            try:
                if not data:
                    raise ValueError("empty file")
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    rgb = decode_file(data, counts)
                if caught:  # e.g. Pillow's "Invalid APNG": decoded, but say so (counted)
                    counts["decoded with a library warning"] += 1
                    log.info("%s: %s", rel, caught[0].message)
                shapes[rgb.size] += 1
                decoded_bytes += rgb.size[0] * rgb.size[1] * 3
            except Exception as exc:  # Pillow raises many types for bad input
                problem = f"not a readable image ({_bad_reason(exc)})"
        if problem:
            if bad_images == "fail":
                raise DataError(f"{root / rel}: {problem}; {_fix(bad_images)}")
            bad.append({"file": rel, "why": problem})
            continue
        good.append((rel, label))
        per_class[label] += 1
    empty = [c for i, c in enumerate(classes) if per_class[i] == 0]
    if empty and bad_images == "fail":
        raise DataError(
            f"{root / empty[0]}: class folder has no readable images; {_fix(bad_images)}"
        )
    bad += [{"file": c + "/", "why": "empty class (its label stays reserved)"} for c in empty]
    if not good:
        raise DataError(f"images_dir {root}: no readable images; point it at an image folder")
    if bad:
        with atomic_path(Path(f"{record}.bad.txt")) as tmp:
            tmp.write_text("".join(f"{b['file']}\t{b['why']}\n" for b in bad))
        log.warning("%s: skipped %d bad files (bad_images: skip)", root, len(bad))
    if bad and n_images == len(files):  # "every file" asked, fewer are good: say so
        hint = {"signature": signature, "bad_images": bad_images, "good": len(good)}
        write_json(_hint(record), hint)
        raise DataError(
            f"images_dir {root}: {len(bad)} bad files skipped (listed in {record}.bad.txt), "
            f"{len(good)} good; run the same command again to use the {len(good)} good "
            "images (or set n_images)"
        )
    rec = {
        "images_dir": str(root.resolve()),
        "sha256": h.hexdigest(),
        "files": len(files),
        "images": len(good),
        "classes": classes,
        "label_dtype": label_dtype(len(classes)).name,
        "policy_counts": dict(sorted(counts.items())),
        "bad_images": bad_images,
        "skipped": bad,
        "decoded_shapes": {f"{w}x{ht}": k for (w, ht), k in shapes.most_common(20)},
        "distinct_shapes": len(shapes),
        "decoded_bytes": decoded_bytes,
        "good": good,
    }
    for k, v in counts.items():
        log.info("%s: %s: %d images", root, k, v)
    write_json(Path(record), rec)


def _hint(record: Path) -> Path:
    return Path(f"{record}.good.json")


def good_count(record: Path, signature: str, bad_images: str) -> int | None:
    """The good-image count a skip scan left for the next run's DAG (a failed job's outputs
    are deleted, so it lives beside them), if the folder and policy are unchanged: the DAG's
    default n_images. The scan itself runs again and checks every file."""
    try:
        hint = json.loads(_hint(record).read_text())
    except (OSError, ValueError):
        return None
    same = hint.get("signature") == signature and hint.get("bad_images") == bad_images
    return int(hint["good"]) if same else None


def load_scan(record: Path) -> dict[str, Any]:
    """The scan record (a missing or damaged one says to rerun the scan)."""
    try:
        return json.loads(Path(record).read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{record}: unreadable ({exc}); delete it and rerun") from None


def _picks(rec: dict[str, Any], n_images: int) -> list[tuple[str, int]]:
    """The good files, repeated in order up to *n_images* only if asked (as the article
    doubles CIFAR); 0: all of them."""
    good = [tuple(g) for g in rec["good"]]
    n = int(n_images) or len(good)
    return [good[i % len(good)] for i in range(n)]


def _labels(picks: list[tuple[str, int]], rec: dict[str, Any]) -> np.ndarray:
    return np.asarray([lab for _, lab in picks], dtype=rec["label_dtype"])


def ingest(
    record: Path,
    images: Path,
    labels: Path,
    size: int,
    n_images: int = 0,
    images_fit: str = "crop",
    resize_filter: str = "bicubic",
    source: Path | None = None,
) -> None:
    """Decode the scanned good files and fit them to (size, size, 3): the pixel data."""
    from PIL import Image

    if images_fit not in FITS:
        raise DataError(f"images_fit {images_fit!r}: use crop or resize")
    rec = load_scan(record)
    root = Path(rec["images_dir"])
    picks = _picks(rec, n_images)
    method = getattr(Image.Resampling, resize_filter.upper())
    counts: Counter = Counter()
    with atomic_path(Path(images)) as tmp:
        out = np.lib.format.open_memmap(
            tmp, mode="w+", dtype=np.uint8, shape=(len(picks), int(size), int(size), 3)
        )
        for s in range(0, len(picks), CHUNK):
            for i in range(s, min(len(picks), s + CHUNK)):
                rel = picks[i][0]
                try:
                    im = decode_file((root / rel).read_bytes(), counts)
                except Exception as exc:
                    raise DataError(
                        f"{root / rel}: changed since the scan ({_bad_reason(exc)}); rerun"
                    ) from None
                out[i] = fit(im, int(size), images_fit, method)
            out.flush()
        del out
    with atomic_path(Path(labels)) as tmp, open(tmp, "wb") as fh:
        np.save(fh, _labels(picks, rec))
    if source:
        write_source(record, source, n_images)


def source_id(images: Path) -> dict[str, Any] | None:
    """The data's identity recorded next to its arrays (``source.json``), if it has one:
    folder data carries its checksum into every row's config hash."""
    f = Path(images).parent / "source.json"
    return json.loads(f.read_text()) if f.exists() else None


def write_source(record: Path, source: Path, n_images: int = 0) -> None:
    """The folder's checksum and counts beside its arrays (read by every job on them)."""
    rec = load_scan(record)
    keep = ("images_dir", "sha256", "files", "images", "label_dtype", "policy_counts")
    keep += ("decoded_bytes", "classes")
    write_json(
        Path(source),
        {
            **{k: rec[k] for k in keep},
            "n_images": int(n_images) or rec["images"],
            "skipped": len(rec["skipped"]),
        },
    )


# --- encoded payload: the files' bytes as they are ---------------------------------------


def _save_blobs(blobs: Iterator[bytes], n: int, images: Path, offsets: Path) -> None:
    """Blobs back to back in one raw file (memory-mapped by readers) plus (n + 1) offsets."""
    offs = np.zeros(n + 1, dtype=np.int64)
    with atomic_path(Path(images)) as tmp, open(tmp, "wb") as fh:
        for i, b in enumerate(blobs):
            offs[i + 1] = offs[i] + len(b)
            fh.write(b)
    with atomic_path(Path(offsets)) as tmp, open(tmp, "wb") as fh:
        np.save(fh, offs)


def encoded_source(
    record: Path,
    images: Path,
    offsets: Path,
    labels: Path,
    n_images: int = 0,
    source: Path | None = None,
) -> None:
    """The good files' bytes, unchanged, in scan order (the ``folderenc`` data): ``images``
    is the raw ``blobs.bin``, ``offsets`` its (n + 1) ``offsets.npy``."""
    rec = load_scan(record)
    root = Path(rec["images_dir"])
    picks = _picks(rec, n_images)
    _save_blobs(((root / rel).read_bytes() for rel, _ in picks), len(picks), images, offsets)
    with atomic_path(Path(labels)) as tmp, open(tmp, "wb") as fh:
        np.save(fh, _labels(picks, rec))
    if source:
        write_source(record, source, n_images)


def encode_cifar(
    images_in: Path,
    labels_in: Path,
    images: Path,
    offsets: Path,
    labels: Path,
    n_images: int,
    png_compress_level: int = 6,
) -> None:
    """CIFAR has no original files: its stated encoding is lossless PNG (Pillow, the tuned
    PNG store's compress level), so decoding gives the pixels back exactly."""
    import io

    from PIL import Image

    src = np.load(images_in, mmap_mode="r")[: int(n_images)]

    def encode() -> Iterator[bytes]:
        for a in src:
            buf = io.BytesIO()
            Image.fromarray(np.asarray(a)).save(buf, "PNG", compress_level=png_compress_level)
            yield buf.getvalue()

    _save_blobs(encode(), len(src), images, offsets)
    with atomic_path(Path(labels)) as tmp, open(tmp, "wb") as fh:
        np.save(fh, np.asarray(np.load(labels_in, mmap_mode="r")[: int(n_images)]))


def load_blobs(images: Path, labels: Path, n: int) -> tuple[list[memoryview], np.ndarray]:
    """The first *n* blobs (views into a memory map: no copy) and their labels."""
    flat = np.memmap(images, dtype=np.uint8, mode="r")
    offs = np.load(Path(images).with_name("offsets.npy"))
    labs = np.load(labels, mmap_mode="r")
    if n > len(offs) - 1 or len(offs) - 1 != len(labs):
        raise DataError(
            f"{images}: holds {len(offs) - 1} blobs and {len(labs)} labels, need {n}; "
            "delete results/data/ for this data and rerun"
        )
    mv = memoryview(flat)
    return [mv[offs[i] : offs[i + 1]] for i in range(n)], np.asarray(labs[:n])
