"""--config overrides arrive as strings; normalize() gives them their intended types."""

from __future__ import annotations

from imgbench.core.config import normalize


def test_lists_and_nulls_from_the_command_line() -> None:
    got = normalize(
        {
            "cutoffs": ["10", "100"],
            "formats": ["png", "hdf5"],
            "cifar_md5": "null",
            "hdf5_compression": "None",
            "lmdb_map_headroom": "1.5",
            "n_images": 400,
            "cifar_url": "123",
            "repeats": "3",
        }
    )
    assert got == {
        "cutoffs": [10, 100],
        "formats": ["png", "hdf5"],
        "cifar_md5": None,
        "hdf5_compression": None,
        "lmdb_map_headroom": 1.5,
        "n_images": 400,
        "cifar_url": "123",
        "repeats": 3,
    }


def test_md5_and_words_stay_strings() -> None:
    md5 = "c58f30108f718f92721af3b95e74349a"
    assert normalize({"cifar_md5": md5, "cold_cache": "auto"}) == {
        "cifar_md5": md5,
        "cold_cache": "auto",
    }
    assert normalize({"n_images": "1.5"})["n_images"] == 1.5  # the schema rejects it later
