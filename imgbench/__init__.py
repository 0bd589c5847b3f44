"""imgbench: store and read lots of images (PNG files, LMDB, HDF5, raw npy), measured fairly."""

__version__ = "0.1.0"
