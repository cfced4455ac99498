import pytest

from spmd.errors import ConfigError
from spmd.units import format_bytes, parse_memory


@pytest.mark.parametrize("text, size", [
    ("2GiB", 2 * 2**30), ("512MiB", 512 * 2**20), ("4GB", 4 * 10**9), ("1.5g", int(1.5e9)),
    ("100 MiB", 100 * 2**20), (1024, 1024), ("64", 64),
])
def test_sizes_parse(text, size):
    assert parse_memory(text) == size


@pytest.mark.parametrize("bad", ["two gigs", "2XB", "", "-1GiB", 0, "0MiB", True, None, 2.5])
def test_bad_sizes_name_the_value(bad):
    with pytest.raises(ConfigError) as info:
        parse_memory(bad)
    assert repr(bad) in str(info.value)
    assert info.value.key == "memory"


def test_format_bytes():
    assert format_bytes(2 * 2**30) == "2.0GiB"
    assert format_bytes(100 * 2**20) == "100.0MiB"
    assert format_bytes(12) == "12B"
