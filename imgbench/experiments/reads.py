"""Timed whole-store reads, warm or cold: decoded pixels (``read_many``) and encoded files
with their decoders (``read_encoded``); every read verified against the source, untimed."""

from __future__ import annotations

from typing import Any

import numpy as np

from imgbench.core.errors import DataError
from imgbench.core.job import Job
from imgbench.core.names import Mode, Op
from imgbench.data.cifar import load_source
from imgbench.data.folder import load_blobs, source_id
from imgbench.data.sizes import is_encoded
from imgbench.experiments.common import damage_is_clear, open_store, prepare_cache
from imgbench.measure import cache, stats, verify
from imgbench.measure.results import Result
from imgbench.measure.timing import measure


def read_many(job: Job) -> dict[str, Any]:
    """Time reading the whole store into arrays, warm or cold, verifying every read."""
    if is_encoded(job.data):
        return read_encoded(job)
    res = Result.for_job(job, Op.READ_MANY)
    src_images, src_labels = load_source(job.images, job.labels, job.n)
    store = open_store(job)
    files = cache.store_files(job.store)  # listed once: 100k PNG files take a second

    def before(_: None, timed: bool) -> None:
        if timed:
            prepare_cache(res, job, job.store, files)

    def after(_: None, got: tuple[np.ndarray, np.ndarray], timed: bool) -> None:
        verify.against_source(job.what, got, src_images, src_labels)

    with damage_is_clear(job):
        measure(res, lambda _: store.read_many(job.store), (None,), before, after)
    res.verified = True
    return res.save(job.result)


#: Decoded images a read_encoded job may hold for verification (the 1.5 GB job budget).
DECODED_BUDGET = 1 << 30


def read_encoded(job: Job) -> dict[str, Any]:
    """Encoded data: time reading every file's bytes (read-only), then reading and decoding
    them with the chosen decoder (the row's time: pixels, like every other read), then with
    Pillow (shown beside it). Each is warm or cold, prepared alike, and verified: the bytes
    round-trip exactly and each decoded image equals the same decoder's output for the
    source file."""
    from imgbench.data import decode

    blobs, labels = load_blobs(job.images, job.labels, job.n)
    sid = source_id(job.images) or {}
    need = sid.get("decoded_bytes", 0) * job.n / max(1, sid.get("images", 1))
    if need > DECODED_BUDGET:
        raise DataError(
            f"{job.what}: {job.n} decoded images take {need / 1e9:.1f} GB, over the "
            f"{DECODED_BUDGET / 1e9:.1f} GB a job may hold to verify them; lower the cutoffs"
        )
    store = open_store(job)
    files = cache.store_files(job.store)
    threads = job.workers if job.mode == Mode.TUNED else 1
    references: dict[str, list[bytes]] = {}  # per decoder: digests of the source decodes

    def timed_read(res: Result, decoder: str | None) -> None:
        dec = decode.get(decoder) if decoder else None

        def run(_: None) -> tuple[list, np.ndarray, list | None]:
            got, got_labels = store.read_encoded(job.store)
            return got, got_labels, decode.decode_all(got, dec, threads) if dec else None

        def before(_: None, timed: bool) -> None:
            if timed:
                prepare_cache(res, job, job.store, files)

        def after(_: None, out: tuple[list, np.ndarray, list | None], timed: bool) -> None:
            got, got_labels, images = out
            verify.blobs(job.what, got, got_labels, blobs, labels)
            if images is not None:
                if decoder not in references:  # once per job, untimed
                    references[decoder] = [verify.digest(dec(b)) for b in blobs]
                verify.decoded(job.what, images, references[decoder])

        with damage_is_clear(job):
            measure(res, run, (None,), before, after)

    for name in {job.decoder, "pillow"}:  # first-use costs (imports, Pillow's plugins)
        decode.get(name)(blobs[0])  # are paid here, untimed, not by whichever runs first
    res = Result.for_job(job, Op.READ_MANY)
    timed_read(res, job.decoder)
    for name, decoder in (("read_only", None), ("pillow", "pillow")):
        other = Result.for_job(job, Op.READ_MANY)
        timed_read(other, decoder)
        res.extra[name] = {
            **stats.summarize(other.samples),
            "samples": other.samples,
            "resident_fraction": other.resident_fraction,
        }
    res.verified = True
    res.threads = threads
    res.extra.update(decoder=job.decoder, payload="encoded", decode_threads=threads)
    res.extra["encoded_bytes"] = int(sum(len(b) for b in blobs))
    return res.save(job.result)
