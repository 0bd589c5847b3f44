"""The article's published numbers (Real Python, 2019), for side-by-side tables."""

from __future__ import annotations

#: The data set the article used; tables compare only rows of this data.
DATA = "cifar32"
CUTOFFS = [10, 100, 1000, 10000, 100000]

#: Seconds to store / read N images, from the article's notebook.
STORE_MANY_S = {
    "png": [0.0113, 0.106, 0.678, 8.83, 80.6],
    "lmdb": [0.0015, 0.0078, 0.034, 0.480, 4.34],
    "hdf5": [0.0021, 0.0034, 0.0040, 0.038, 0.285],
}
READ_MANY_S = {
    "png": [0.0078, 0.075, 0.580, 5.83, 62.5],
    "lmdb": [0.0014, 0.0096, 0.041, 0.318, 3.46],
    "hdf5": [0.0025, 0.0047, 0.014, 0.096, 1.31],
}
#: Disk use as plotted, labelled "KB" (the unit is doubtful: see the notes).
DISK_KB = {
    "png": [24, 204, 2004, 20032, 200296],
    "lmdb": [60, 420, 4000, 39000, 393000],
    "hdf5": [36, 304, 2900, 29000, 293000],
}
#: The article's script prints another PNG series than its notebook (shown as a note).
DISK_KB_PNG_SCRIPT = [44, 404, 4004, 40032, 400296]
#: Single image: store ms, read ms, disk KiB.
SINGLE = {
    "png": {"store_ms": 1.915, "read_ms": 1.620, "disk_kib": 8},
    "lmdb": {"store_ms": 1.203, "read_ms": 4.521, "disk_kib": 32},
    "hdf5": {"store_ms": 8.243, "read_ms": 1.980, "disk_kib": 8},
}
