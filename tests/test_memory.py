"""Sizes that cannot fit in memory are refused with the estimate."""

from __future__ import annotations

import pytest

from netdissect.errors import OptionError
from netdissect.memory import available_memory, format_bytes, require_memory


def test_format_bytes():
    assert format_bytes(512) == "512 B"
    assert format_bytes(3 * 2**20) == "3 MiB"
    assert format_bytes(2.5 * 2**30) == "2.5 GiB"
    assert format_bytes(2**40) == "1.0 TiB"


def test_require_memory_refuses_with_the_estimate():
    require_memory(2**30, "--size 10", available=2**31)  # fits: nothing happens
    with pytest.raises(
        OptionError, match=r"--seg-size 9 needs about 4.0 GiB of memory, more than the 2.0 GiB available"
    ):
        require_memory(4 * 2**30, "--seg-size 9", available=2 * 2**30)


def test_available_memory_is_known_here():
    found = available_memory()
    assert found is None or found > 2**20
