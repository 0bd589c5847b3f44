"""Errors that end a step with one clear line: what is wrong and what to do."""

from __future__ import annotations


class BenchError(RuntimeError):
    """Base class: the message is the whole story (the CLI prints it without a traceback)."""


class DataError(BenchError):
    """The input archive or array is not what the pipeline needs."""


class DownloadError(BenchError):
    """The archive could not be fetched or failed its checksum."""


class StoreError(BenchError):
    """A store could not be written (disk full, map full) or does not match the data."""


class VerificationError(StoreError):
    """A timed read returned data that differs from the source images or labels."""
