"""imgbench: store and read lots of images with PNG files, LMDB, HDF5 and raw npy, measured fairly."""

__version__ = "0.1.0"
