"""Latency percentiles of a stream in bounded memory (``vsda-infer``'s per-stage timings)."""

from __future__ import annotations

import math

import numpy as np


class LatencyHistogram:
    """Percentiles of a stream of latencies in bounded memory: log-spaced bins 1% wide (1 µs .. 1000 s)."""

    LOW_MS, HIGH_MS, GROWTH = 1e-3, 1e6, 1.01

    def __init__(self) -> None:
        self._bins = math.ceil(math.log(self.HIGH_MS / self.LOW_MS) / math.log(self.GROWTH))
        self.counts = np.zeros(self._bins + 2, np.int64)  # [under, bins..., over]
        self.count = 0
        self.low, self.high = math.inf, 0.0

    def add(self, ms: float) -> None:
        """Count one latency in milliseconds."""
        if ms <= self.LOW_MS:
            i = 0
        else:
            i = min(self._bins + 1, 1 + int(math.log(ms / self.LOW_MS) / math.log(self.GROWTH)))
        self.counts[i] += 1
        self.count += 1
        self.low, self.high = min(self.low, ms), max(self.high, ms)

    def percentile(self, q: float) -> float:
        """Return the nearest-rank ``q``-th percentile (within 1%); NaN when empty."""
        if self.count == 0:
            return math.nan
        rank = max(1, math.ceil(q / 100.0 * self.count))
        i = int(np.searchsorted(np.cumsum(self.counts), rank))
        centre = self.LOW_MS * self.GROWTH ** (i - 0.5)  # geometric centre of bin i
        return min(max(centre, self.low), self.high)

    def summary(self) -> dict[str, float | None]:
        """Return ``{"p50", "p95", "p99"}`` in ms (3 decimals), None when empty."""
        return {f"p{q}": (round(self.percentile(q), 3) if self.count else None) for q in (50, 95, 99)}
