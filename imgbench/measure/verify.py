"""Check a read against the source data, so no format can win by returning the wrong thing."""

from __future__ import annotations

import hashlib

import numpy as np

from imgbench.core.errors import VerificationError


def check(
    what: str,
    images: np.ndarray,
    labels: np.ndarray,
    src_images: np.ndarray,
    src_labels: np.ndarray,
    offset: int = 0,
) -> None:
    """Raise VerificationError unless images and labels equal the source exactly.

    *offset* is the index of the first image, so chunked callers report absolute indices.
    """
    if images.shape != src_images.shape or labels.shape != src_labels.shape:
        raise VerificationError(
            f"{what}: store returned images {images.shape} and labels {labels.shape}, expected "
            f"{src_images.shape} and {src_labels.shape}; the store was built for other data "
            "(another n_images?) or altered: delete it and rerun"
        )
    if images.dtype != np.uint8:
        raise VerificationError(f"{what}: store returned dtype {images.dtype}, expected uint8")
    if not np.array_equal(labels, src_labels):
        bad = np.flatnonzero(labels != src_labels)
        raise VerificationError(
            f"{what}: {bad.size} labels differ from the source (first at index {offset + bad[0]}); "
            "the store is corrupt or stale: delete it and rerun"
        )
    if not np.array_equal(images, src_images):
        diff = (images != src_images).reshape(len(images), -1).any(axis=1)
        bad = np.flatnonzero(diff)
        raise VerificationError(
            f"{what}: {bad.size} images differ from the source pixels (first at index "
            f"{offset + bad[0]}); the store is corrupt or stale: delete it and rerun"
        )


#: Images compared per step, so verifying 100k images needs no second full copy.
CHUNK = 8192


def against_source(
    what: str, got: tuple[np.ndarray, np.ndarray], src_images: np.ndarray, src_labels: np.ndarray
) -> None:
    """Exact comparison of a whole read with the source, in chunks; raises on a difference."""
    images, labels = got
    if images.shape != src_images.shape or labels.shape != src_labels.shape:
        check(what, images, labels, src_images, src_labels)  # raises: says which shape
    for s in range(0, len(images), CHUNK):
        e = s + CHUNK
        check(what, images[s:e], labels[s:e], src_images[s:e], src_labels[s:e], s)


def against_indices(
    what: str,
    got: tuple[np.ndarray, np.ndarray],
    src_images: np.ndarray,
    src_labels: np.ndarray,
    order: np.ndarray,
) -> None:
    """Exact comparison of an epoch's output with the source images in the epoch's order, in
    chunks; a difference names the image's index in the store, not its place in the epoch."""
    images, labels = got
    if len(images) != len(order) or len(labels) != len(order):
        raise VerificationError(
            f"{what}: the epoch returned {len(images)} images for {len(order)} indices"
        )
    for s in range(0, len(order), CHUNK):
        idx = np.asarray(order[s : s + CHUNK])
        want_i, want_l = np.asarray(src_images[np.sort(idx)]), np.asarray(src_labels[np.sort(idx)])
        inv = np.argsort(np.argsort(idx))  # rows of the sorted read back in epoch order
        want_i, want_l = want_i[inv], want_l[inv]
        bad_l = np.flatnonzero(labels[s : s + CHUNK] != want_l)
        bad_i = np.flatnonzero((images[s : s + CHUNK] != want_i).reshape(len(idx), -1).any(axis=1))
        bad = np.union1d(bad_l, bad_i)
        if bad.size:
            raise VerificationError(
                f"{what}: {bad.size} images or labels of the epoch differ from the source "
                f"(first: store index {int(idx[bad[0]])}); the store returned wrong data at "
                "that index: delete it and rerun the build"
            )


def is_permutation(what: str, order: np.ndarray, n: int) -> None:
    """A streamed epoch must deliver every store index exactly once (none lost, none twice)."""
    inside = order[(order >= 0) & (order < n)]
    counts = np.bincount(inside, minlength=n)
    if len(order) == n == len(inside) and (counts == 1).all():
        return
    missing, twice = np.flatnonzero(counts == 0), np.flatnonzero(counts > 1)
    first = (
        f"store index {int(missing[0])} never came"
        if missing.size
        else f"store index {int(twice[0])} came twice"
        if twice.size
        else "an index out of range"
    )
    raise VerificationError(
        f"{what}: the streamed epoch did not deliver each of the {n} images once ({first}); "
        "the store's shards or index are damaged: delete it and rerun the build"
    )


def blobs(
    what: str, got: list, labels: np.ndarray, src_blobs: list, src_labels: np.ndarray
) -> None:
    """Encoded data: every stored file's bytes round-trip exactly, labels with their dtype."""
    if len(got) != len(src_blobs) or labels.shape != src_labels.shape:
        raise VerificationError(
            f"{what}: store returned {len(got)} files and {labels.shape[0]} labels, expected "
            f"{len(src_blobs)}; the store was built for other data: delete it and rerun"
        )
    if labels.dtype != src_labels.dtype or not np.array_equal(labels, src_labels):
        raise VerificationError(
            f"{what}: labels differ from the source ({labels.dtype} vs {src_labels.dtype}); "
            "the store is corrupt or stale: delete it and rerun"
        )
    for i, (a, b) in enumerate(zip(got, src_blobs, strict=True)):
        if memoryview(a).cast("B") != memoryview(b).cast("B"):
            raise VerificationError(
                f"{what}: the bytes of file {i} differ from the source ({len(a)} vs {len(b)} "
                "bytes); the store is corrupt or stale: delete it and rerun"
            )


def digest(image: np.ndarray) -> bytes:
    """A fingerprint of one decoded image (shape, dtype and pixels): equal only for equal
    images, so a reference decode is computed once per job, not once per repeat."""
    h = hashlib.blake2b(f"{image.shape}{image.dtype}".encode(), digest_size=16)
    h.update(np.ascontiguousarray(image).data)
    return h.digest()


def decoded(what: str, images: list, references: list[bytes]) -> None:
    """Each decoded image equals the same decoder's output for the source file's bytes
    (*references*: :func:`digest` of that output, image by image)."""
    for i, (im, ref) in enumerate(zip(images, references, strict=True)):
        if im.dtype != np.uint8 or digest(im) != ref:
            raise VerificationError(
                f"{what}: image {i} decoded to {im.shape} {im.dtype}, not the pixels its "
                "source file decodes to; the store is corrupt: delete it and rerun"
            )
