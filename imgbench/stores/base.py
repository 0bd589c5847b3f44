"""The one small interface every storage format implements.

A store lives in a directory that the caller creates and owns (the pipeline writes it
under a temporary name and renames it when complete). A format module provides one
class per mode; the tuned class usually subclasses the article one and overrides only
what a careful engineer would do differently, so no format code is duplicated.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np


class Store(ABC):
    """Write and read many images (N, H, W, C uint8) with labels (N,) uint8."""

    #: Format name, as registered in :data:`imgbench.stores.FORMATS`.
    format: ClassVar[str]
    #: "article" (faithful to the 2019 article) or "tuned" (the format at its best).
    mode: ClassVar[str]
    #: Flat config keys this class reads, with their defaults.
    OPTIONS: ClassVar[dict[str, Any]] = {}

    def __init__(self, options: Mapping[str, Any] | None = None, workers: int = 1) -> None:
        opts = dict(self.OPTIONS)
        unknown = set(options or {}) - set(opts)
        if unknown:
            raise ValueError(f"{self.format}/{self.mode}: unknown options {sorted(unknown)}")
        opts.update(options or {})
        self.options = opts
        self.workers = max(1, int(workers))

    @abstractmethod
    def write_many(self, path: Path, images: np.ndarray, labels: np.ndarray) -> None:
        """Store all *images* and *labels* in the (existing, empty) directory *path*."""

    @abstractmethod
    def read_many(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        """Read every image and label back as arrays (fully in memory, not lazy)."""

    def write_one(self, path: Path, image: np.ndarray, label: int) -> None:
        """Store one image in its own store (the article's single-image experiment)."""
        self.write_many(path, image[None], np.asarray([label], dtype=np.uint8))

    def read_one(self, path: Path) -> tuple[np.ndarray, int]:
        """Read the one image of a single-image store."""
        images, labels = self.read_many(path)
        return images[0], int(labels[0])
