"""Every registered object-storage reader against a real SeaweedFS server: a tiny tuned store
uploaded file by file and read back through the proxy byte for byte (full read, shuffled
batches at 1 and 4 requests in flight, two forked readers); the requests were counted."""

from __future__ import annotations

import pytest

from imgbench import stores
from tests.remote_check import check_round_trip


@pytest.mark.parametrize("fmt", stores.s3_formats())
def test_round_trip(s3_server, fmt, tmp_path):
    counts = check_round_trip(s3_server, fmt, tmp_path)
    assert counts["requests"] > 0 and counts["bytes_down"] > 0, counts


def test_every_format_reads_from_s3_or_says_why():
    for fmt, spec in stores.FORMATS.items():
        assert bool(spec.s3) != bool(spec.s3_why_not), fmt
        if spec.s3:
            cls = stores.remote_class(fmt)
            assert cls.access in ("object", "range", "stream", "staged"), fmt
            assert cls.in_flight and cls.tuned_for_s3, f"{fmt}: say how and why"
