"""--config overrides arrive as strings; normalize() gives them the schema's types."""

from __future__ import annotations

import subprocess
import sys

import pytest

from imgbench.core.config import normalize
from tests.conftest import REPO


def test_lists_and_nulls_from_the_command_line() -> None:
    got = normalize(
        {
            "cutoffs": ["10", "100"],
            "formats": ["png", "hdf5"],
            "cifar_md5": "null",
            "hdf5_compression": "null",
            "lmdb_map_headroom": "1.5",
            "n_images": 400,
            "cifar_url": "123",
            "repeats": "3",
            "epoch_sizes": "~",
            "computation_time": ["0.016", "1"],
            "zarr_checksum": "true",
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
        "epoch_sizes": None,
        "computation_time": [0.016, 1],
        "zarr_checksum": True,
    }


def test_md5_and_words_stay_strings() -> None:
    md5 = "c58f30108f718f92721af3b95e74349a"
    assert normalize({"cifar_md5": md5, "cold_cache": "auto"}) == {
        "cifar_md5": md5,
        "cold_cache": "auto",
    }
    assert normalize({"n_images": "1.5"})["n_images"] == 1.5  # the schema rejects it later


@pytest.mark.parametrize(
    ("key", "given", "expected"),
    [
        ("lance_storage_version", "2.0", "2.0"),  # a string key: text stays text
        ("lance_storage_version", 2.0, "2.0"),  # what Snakemake makes of "=2.0"
        ("images_dir", "2024", "2024"),  # a path that looks like a number
        ("images_dir", 2024, "2024"),
        ("images_dir", "null", None),  # [string, null]: null still means null
        ("cifar_url", 123, "123"),
        ("hdf5_compression", "gzip", "gzip"),
        ("hdf5_compression", "None", "None"),  # YAML's null is null or ~; the schema rejects it
        ("formats", ["1", "png"], ["1", "png"]),  # string items stay strings
        ("repeats", "three", "three"),  # not a number: left for the schema's one-line error
        ("cutoffs", "[10, 100", "[10, 100"),  # not YAML either
        ("unknown_key", "3", "3"),  # not in the schema: the schema names it
    ],
)
def test_schema_types_decide(key: str, given: object, expected: object) -> None:
    assert normalize({key: given}) == {key: expected}


def test_type_comes_from_an_enum_when_there_is_no_type() -> None:
    schema = {"properties": {"level": {"enum": [None, 1, 2]}, "name": {"enum": ["a", "1"]}}}
    assert normalize({"level": "2", "name": "1"}, schema) == {"level": 2, "name": "1"}


def test_command_line_values_reach_the_schema_typed() -> None:
    """Through Snakemake's own --config parser, as common.smk receives them."""
    code = (
        "from snakemake.cli import parse_config; from imgbench.core.config import normalize; "
        "print(normalize(parse_config(['lance_storage_version=2.0', 'images_dir=2024', "
        "'cutoffs=[10,100]', 'cifar_md5=null', 'zarr_checksum=true', 'epoch_sizes=[32]'])))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert out.stdout.strip() == str(
        {
            "lance_storage_version": "2.0",
            "images_dir": "2024",
            "cutoffs": [10, 100],
            "cifar_md5": None,
            "zarr_checksum": True,
            "epoch_sizes": [32],
        }
    )
