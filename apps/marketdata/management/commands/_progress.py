"""A progress bar for the market-data commands: tqdm on a terminal, nothing otherwise."""

from typing import Any

from django.core.management.base import OutputWrapper
from tqdm import tqdm


def progress_bar(stream: OutputWrapper, *, total: int | None, desc: str, unit: str = "bars") -> Any:
    """tqdm writing to the command's stderr; disabled (silent) when that is not a terminal."""
    raw = getattr(stream, "_out", stream)
    return tqdm(total=total, desc=desc, unit=unit, unit_scale=True, file=raw, disable=not stream.isatty(), leave=False)
