"""Confluence clustering behind ``structure.confluence``.

Works row by row on per-bar columns that are already free of look-ahead (S/R, trendline, zone and
Fibonacci outputs for the same bar), so every row of the result uses only that row's inputs.
Vectorised over rows in chunks; the per-row work is over a fixed, small set of candidates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from apps.marketdata.indicators._structure_common import FloatArray

SOURCES = ("sr", "trendline", "zone", "fib")
STRENGTH_CAP = 5.0
CHUNK_ROWS = 4096


@dataclass(frozen=True)
class Candidates:
    """``m`` candidate price intervals per row: ``low``/``high``/``strength`` are ``n x m``."""

    names: list[str]
    source: np.ndarray  # m source ids, indexes into SOURCES
    low: FloatArray
    high: FloatArray
    strength: FloatArray


def fib_strength(ratio: float) -> float:
    """2 for the swing ends and the classic ratios (0.382, 0.5, 0.618, 1.618), 1 for the others."""
    return 2.0 if round(ratio, 3) in {0.0, 1.0, 0.382, 0.5, 0.618, 1.618} else 1.0


def build_candidates(
    sr: pd.DataFrame, lines: pd.DataFrame, zones: pd.DataFrame, fib: pd.DataFrame, fib_ratios: dict[str, float]
) -> Candidates:
    names: list[str] = []
    source: list[int] = []
    lows: list[np.ndarray] = []
    highs: list[np.ndarray] = []
    strengths: list[np.ndarray] = []

    def add(name: str, src: str, low: pd.Series, high: pd.Series, strength: pd.Series | float) -> None:
        names.append(name)
        source.append(SOURCES.index(src))
        lows.append(low.to_numpy(dtype=np.float64))
        highs.append(high.to_numpy(dtype=np.float64))
        strengths.append(np.broadcast_to(np.asarray(strength, dtype=np.float64), (len(low),)))

    for side in ("support", "resistance"):
        add(side, "sr", sr[side], sr[side], sr[f"{side}_strength"])
        add(f"{side}_line", "trendline", lines[f"{side}_line"], lines[f"{side}_line"], lines[f"{side}_line_strength"])
    for kind in ("demand", "supply"):
        add(f"{kind}_zone", "zone", zones[f"{kind}_low"], zones[f"{kind}_high"], zones[f"{kind}_strength"])
    for name, ratio in fib_ratios.items():
        add(name, "fib", fib[name], fib[name], fib_strength(ratio))
    return Candidates(
        names=names,
        source=np.asarray(source),
        low=np.column_stack(lows),
        high=np.column_stack(highs),
        strength=np.column_stack(strengths),
    )


@dataclass(frozen=True)
class Clusters:
    """For each row and anchor candidate ``j``: the best member per source near ``j``."""

    member: np.ndarray  # n x m x S: chosen candidate index per source, -1 if none
    price: FloatArray  # n x m: mean midpoint of the chosen members
    score: FloatArray  # n x m
    sources: np.ndarray  # n x m: number of agreeing sources


def cluster(low: FloatArray, high: FloatArray, strength: FloatArray, source: np.ndarray, tol: FloatArray) -> Clusters:
    """Clusters around every candidate; ``low`` etc. are ``n x m`` with NaN for absent ones."""
    n, m = low.shape
    valid = ~np.isnan(low)
    gap = np.maximum(low[:, None, :] - high[:, :, None], low[:, :, None] - high[:, None, :])
    near = (gap <= tol[:, None, None]) & valid[:, :, None] & valid[:, None, :]
    weight = np.where(valid, np.minimum(np.nan_to_num(strength, nan=0.0), STRENGTH_CAP) / STRENGTH_CAP, 0.0)
    mid = (low + high) / 2
    member = np.full((n, m, len(SOURCES)), -1, dtype=np.int64)
    price_sum = np.zeros((n, m))
    score = np.zeros((n, m))
    count = np.zeros((n, m), dtype=np.int64)
    for s in range(len(SOURCES)):
        cols = np.flatnonzero(source == s)
        if cols.size == 0:
            continue
        # Closest-first would also work; the strongest member of each source speaks for it.
        ranked = np.where(near[:, :, cols], weight[:, None, cols], -1.0)
        pick = ranked.argmax(axis=2)
        present = np.take_along_axis(ranked, pick[:, :, None], axis=2)[:, :, 0] >= 0
        chosen = cols[pick]
        member[:, :, s] = np.where(present, chosen, -1)
        chosen_mid = np.take_along_axis(mid, chosen.reshape(n, -1), axis=1).reshape(n, m)
        chosen_weight = np.take_along_axis(weight, chosen.reshape(n, -1), axis=1).reshape(n, m)
        price_sum += np.where(present, chosen_mid, 0.0)
        score += np.where(present, 1.0 + chosen_weight, 0.0)
        count += present
    with np.errstate(invalid="ignore", divide="ignore"):
        price = np.where(count > 0, price_sum / np.maximum(count, 1), np.nan)
    return Clusters(member=member, price=price, score=score, sources=count)


def side_best(
    cand: Candidates, close: FloatArray, tol: FloatArray, side: int, min_sources: int
) -> dict[str, FloatArray]:
    """Nearest qualifying cluster below (``side=+1``, support) or above (``-1``) the close."""
    n = len(close)
    price, score, sources = np.full(n, np.nan), np.full(n, np.nan), np.zeros(n)
    for start in range(0, n, CHUNK_ROWS):
        rows = slice(start, min(n, start + CHUNK_ROWS))
        clusters = side_clusters(cand, close, tol, side, rows)
        ok = (clusters.sources >= min_sources) & ~np.isnan(clusters.price)
        key = np.where(ok, clusters.price * side, -np.inf)
        j = key.argmax(axis=1)
        found = np.take_along_axis(ok, j[:, None], axis=1)[:, 0]
        pick = (np.arange(len(j)), j)
        price[rows] = np.where(found, clusters.price[pick], np.nan)
        score[rows] = np.where(found, clusters.score[pick], np.nan)
        sources[rows] = np.where(found, clusters.sources[pick], 0)
    return {"price": price, "score": score, "sources": sources}


def side_clusters(cand: Candidates, close: FloatArray, tol: FloatArray, side: int, rows: slice) -> Clusters:
    """Clusters of the candidates on one side of the close (midpoint at/below it for support)."""
    low, high = cand.low[rows], cand.high[rows]
    mid = (low + high) / 2
    c = close[rows][:, None]
    keep = (mid <= c) if side > 0 else (mid > c)
    keep &= ~np.isnan(tol[rows])[:, None]
    low = np.where(keep, low, np.nan)
    high = np.where(keep, high, np.nan)
    return cluster(low, high, cand.strength[rows], cand.source, tol[rows])
