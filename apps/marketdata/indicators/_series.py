"""Turning pandas Series into the float64 arrays the kernels want, and results back.

Leading NaNs are skipped as TA-Lib's Python wrapper skips them: a kernel runs from the first bar
where every input is present, and rows before it are NaN. A NaN inside the series is not
repaired; recursive indicators carry it forward.
"""

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pandas as pd

from apps.marketdata.indicators import _kernels

Array = npt.NDArray[np.float64]


def check_period(value: int, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def as_arrays(*series: pd.Series) -> list[Array]:
    """float64 contiguous views of the inputs, which must share one index."""
    first = series[0]
    for other in series[1:]:
        if other.index is not first.index and not other.index.equals(first.index):
            raise ValueError("all input series must share the same index")
    return [np.ascontiguousarray(s.to_numpy(dtype=np.float64)) for s in series]


def valid_start(*arrays: Array) -> int:
    """First bar from which every input is present."""
    return max(int(_kernels.first_valid(a)) for a in arrays)


def run(kernel: Callable[..., None], arrays: list[Array], *params: object, outputs: int = 1) -> list[Array]:
    """Run `kernel(*inputs_from_start, *params, *outs_from_start)` on NaN-filled outputs."""
    size = arrays[0].shape[0]
    start = valid_start(*arrays)
    outs = [np.full(size, np.nan) for _ in range(outputs)]
    if start < size:
        kernel(*(a[start:] for a in arrays), *params, *(o[start:] for o in outs))
    return outs


def to_series(values: Array, like: pd.Series, name: str) -> pd.Series:
    return pd.Series(values, index=like.index, name=name, copy=False)


def to_frame(columns: dict[str, Array], like: pd.Series) -> pd.DataFrame:
    return pd.DataFrame(columns, index=like.index, copy=False)
