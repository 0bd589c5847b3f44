"""A pickle reader that refuses to run foreign code.

CIFAR-10 batches and the article's LMDB values are pickles. Plain ``pickle.loads`` on a
file someone else can swap is remote code execution, so every pickle this project reads
goes through :func:`loads`, which resolves only an explicit allow-list of globals and
refuses anything else *before* it is called.
"""

from __future__ import annotations

import io
import pickle

#: (module, name) pairs a CIFAR batch or an article-mode LMDB record needs.
#: numpy arrays reconstruct through ``_reconstruct`` + ``ndarray`` + ``dtype``; Python 3
#: protocol-2 pickles spell bytes as ``_codecs.encode(str, "latin1")``.
ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
        ("imgbench.stores.lmdb_store", "CIFARImage"),
    }
)


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle asked for a global outside the allow-list."""


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, what: str, encoding: str) -> None:
        super().__init__(file, encoding=encoding)
        self._what = what

    def find_class(self, module: str, name: str) -> object:  # noqa: ANN001
        if (module, name) in ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise UnsafePickleError(
            f"{self._what}: refusing pickled global {module}.{name} (only numpy arrays and "
            "plain containers are allowed); the file is not a genuine CIFAR-10 batch or "
            "imgbench record: delete it and rebuild it from a trusted source"
        )


def loads(data: bytes, what: str, encoding: str = "bytes") -> object:
    """Unpickle *data* allowing only CIFAR/numpy globals; *what* names the source in errors."""
    return _RestrictedUnpickler(io.BytesIO(data), what, encoding).load()
