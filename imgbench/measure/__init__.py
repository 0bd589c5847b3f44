"""Measuring: timing and statistics, results, cache eviction, the page-cache cap, disk use,
the device probe, verification."""
