"""The shared vocabulary, defined once: modes, operations, cache states, cold-cache scopes.

They are ``StrEnum``s, so they compare equal to (and serialise as) the plain strings in
result files, rule params and table columns.
"""

from __future__ import annotations

from enum import StrEnum


class Mode(StrEnum):
    """Which code writes and reads a store."""

    ARTICLE = "article"  # the 2019 article's code, made to run correctly
    TUNED = "tuned"  # each format the way a careful engineer uses it


class Op(StrEnum):
    """What a timed measurement times."""

    WRITE_MANY = "write_many"
    READ_MANY = "read_many"
    WRITE_ONE = "write_one"
    READ_ONE = "read_one"
    READ_EPOCH = "read_epoch"
    TRAIN = "train"


class Cache(StrEnum):
    """Page-cache state of the store when a timed read starts (writes: none)."""

    WARM = "warm"
    COLD = "cold"
    CAPPED = "capped"  # a time-boxed epoch from an evicted store, page cache capped below it
    NONE = "none"


class Evict(StrEnum):
    """How cold reads evict the store (config key ``cold_cache``)."""

    AUTO = "auto"  # fadvise, then drop_caches (root) if pages stayed, then inodes/dentries
    FADVISE = "fadvise"  # posix_fadvise(DONTNEED) on every file: no root needed
    DROP_CACHES = "drop_caches"  # /proc/sys/vm/drop_caches (root)


class CacheScope(StrEnum):
    """How cold or warm a read's store really was when its timer started."""

    DATA = "data"  # cold: the store's file pages evicted; inodes and dentries still cached
    FULL = "full"  # cold: file pages, and the inode and dentry caches dropped too
    RESIDENT = "resident"  # warm: the whole store in the page cache
    PARTIAL = "partial"  # warm: the store does not fit in memory


class Pattern(StrEnum):
    """The order an epoch reads the store in (config key ``access_patterns``)."""

    SEQUENTIAL = "sequential"  # index order, mini-batches of batch_size
    SHUFFLED = "shuffled"  # a new permutation per repeat, mini-batches of batch_size
    RANDOM = "random"  # batch size 1, a seeded sample of random_samples images
    #: WebDataset streaming: shards in a shuffled order split over the readers, each read
    #: front to back through a shuffle buffer (formats that stream: the registry says which)
    BUFFERED = "buffered"


class ReaderKind(StrEnum):
    """How an epoch's readers run (config key ``reader_kind``)."""

    PROCESS = "process"  # forked processes, as PyTorch DataLoader workers
    THREAD = "thread"  # threads, as many TensorFlow and custom loaders
