"""Data sources: the CIFAR archive, image sizes, your own folders, encoded files."""
