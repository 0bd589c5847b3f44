"""Two small experiments for article claims no timing table decides (untimed, run once).

``lmdb-map-full``: "adding data to an LMDB later easily hits MapFullError despite a buffer".
``lazy-items``: "with LMDB and HDF5 only the requested item is read into memory".
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from imgbench.core.atomic import write_json
from imgbench.data.cifar import load_source


def lmdb_map_full(store: Path, images: Path, labels: Path, n: str, result: Path) -> None:
    """Run the article's LMDB writer again on a copy of its built store with 10 % more images,
    as a user adding data later would; its sizing rule (map_size = new images x image.nbytes
    x 10) then sizes the map for the new images only. Records whether MapFullError came."""
    import lmdb

    from imgbench.stores import get_store

    n_store = int(n)
    k = max(1, n_store // 10)
    src_images, src_labels = load_source(images, labels, n_store)
    new_images, new_labels = np.array(src_images[:k]), np.array(src_labels[:k])
    out = {"n_images": n_store, "appended": k, "map_size": k * new_images[0].nbytes * 10}
    with tempfile.TemporaryDirectory(dir=Path(result).parent, prefix=".lmdb-append-") as d:
        copy = Path(d) / "store"
        shutil.copytree(store, copy, ignore=shutil.ignore_patterns(".snakemake_timestamp"))
        out["data_bytes"] = (copy / "data.mdb").stat().st_size
        try:
            get_store("lmdb", "article").write_many(copy, new_images, new_labels)
            out.update(map_full=False, error=None)
        except Exception as exc:  # the article's writer turns MapFullError into a StoreError
            full = isinstance(exc.__context__, lmdb.MapFullError) or "map full" in str(exc)
            out.update(map_full=full, error=f"{type(exc).__name__}: {exc}")
    write_json(result, out)


_PEAK = """
import json, resource, sys
from imgbench.stores import get_store
from pathlib import Path
fmt, path, i = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
store = get_store(fmt, "article")
store.read_batch(path, [0])  # imports, library init and the first page: not the claim
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
images, labels = store.read_batch(path, [i])
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"peak_rss_increase_bytes": (after - before) * 1024,
                  "image_bytes": int(images[0].nbytes)}))
"""


def lazy_items(stores: list[Path], formats: list[str], n: str, result: Path) -> None:
    """Peak memory while reading one image (the article's own single-item read) of each
    store, in a fresh process so nothing else inflates the peak."""
    items = []
    for store, fmt in zip(stores, formats, strict=True):
        i = int(n) // 2
        proc = subprocess.run(
            [sys.executable, "-c", _PEAK, fmt, str(store), str(i)],
            capture_output=True,
            text=True,
            check=True,
        )
        size = sum(f.stat().st_size for f in Path(store).rglob("*") if f.is_file())
        items.append(
            {
                "format": fmt,
                "mode": "article",
                "n_images": int(n),
                "store_bytes": size,
                **json.loads(proc.stdout),
            }
        )
    write_json(result, {"items": items})
