"""Sizes that cannot fit in memory, refused before the work starts with the estimate."""

from __future__ import annotations

import os

from .errors import OptionError


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux: MemAvailable), or None when unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None


def format_bytes(n: float) -> str:
    """``n`` bytes as a short text: 512 MiB, 3.2 GiB, 1.1 TiB."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit in ("B", "KiB", "MiB") else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def require_memory(needed: float, what: str, available: int | None = None) -> None:
    """Refuse with one line when ``needed`` bytes exceed the memory available (``what`` names the option)."""
    available = available_memory() if available is None else available
    if available is not None and needed > available:
        raise OptionError(
            f"{what} needs about {format_bytes(needed)} of memory, more than the {format_bytes(available)} "
            "available: choose a smaller value"
        )
