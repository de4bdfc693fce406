"""Parsing of sizes (ossctl/units.py), alert thresholds and GPU id lists (the options of
`vram watch`, gpu/watch.py) and planning targets (`vram plan --gpus`, gpu/fit.py)."""

from __future__ import annotations

import pytest

from ossctl.errors import UsageError
from ossctl.gpu.fit import parse_gpu_spec
from ossctl.gpu.watch import parse_gpu_ids, parse_threshold
from ossctl.units import parse_size


@pytest.mark.parametrize("text,n", [
    ("95GiB", 95 * 1024 ** 3), ("95 GiB", 95 * 1024 ** 3), ("80GB", 80 * 10 ** 9), ("1.5gib", 3 * 1024 ** 3 // 2),
    ("81920MiB", 80 * 1024 ** 3), ("1024", 1024), ("2TiB", 2 * 1024 ** 4),
])
def test_parse_size(text, n):
    assert parse_size(text) == n


@pytest.mark.parametrize("text", ["", "GiB", "-5GiB", "95 gigs", "9e9", "1,5GiB"])
def test_parse_size_rejects(text):
    with pytest.raises(UsageError):
        parse_size(text)


def test_threshold():
    t = parse_threshold("90%")
    assert (t.percent, t.bytes, t.limit(1000), str(t)) == (90.0, None, 900, "90%")
    assert t.limit(None) is None
    b = parse_threshold("95GiB")
    assert (b.bytes, b.limit(10), str(b)) == (95 * 1024 ** 3, 95 * 1024 ** 3, "95.0 GiB")
    for bad in ("0%", "101%", "x%", "%", "lots"):
        with pytest.raises(UsageError, match="malformed --alert-above"):
            parse_threshold(bad)


def test_gpu_ids():
    assert parse_gpu_ids("2,0,2") == [0, 2]
    assert parse_gpu_ids("all") == []
    for bad in ("", "a", "0,,1", "-1", "0;1"):
        with pytest.raises(UsageError, match="malformed --gpu"):
            parse_gpu_ids(bad)


def test_gpu_spec():
    assert parse_gpu_spec("4x80GiB") == [80 * 1024 ** 3] * 4
    assert parse_gpu_spec("1X97GB") == [97 * 10 ** 9]
    assert parse_gpu_spec("80GiB,40GiB") == [80 * 1024 ** 3, 40 * 1024 ** 3]
    for bad in ("4x", "0x80GiB", "x80GiB", "4x80 elephants", "80GiB,", "4x0GiB", "99x80GiB"):
        with pytest.raises(UsageError, match="malformed --gpus"):
            parse_gpu_spec(bad)
