"""Per-source token buckets: a storming sensor is told to back off (429), others are not."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping


class TokenBuckets:
    """``rate`` tokens/s per key up to ``burst``; a demand is granted whole or not at all."""

    def __init__(
        self,
        *,
        rate: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 10_000,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}  # key → (tokens, at)

    def _tokens(self, key: str, now: float) -> float:
        tokens, at = self._buckets.get(key, (float(self.burst), now))
        return min(float(self.burst), tokens + (now - at) * self.rate)

    def take(self, demand: Mapping[str, int]) -> float:
        """0.0 when every key had its tokens (now spent); else seconds until it would.

        ``math.inf`` when a demand exceeds the bucket size and can never be granted.
        """
        now = self._clock()
        wait = 0.0
        for key, n in demand.items():
            if n > self.burst:
                return math.inf
            missing = n - self._tokens(key, now)
            if missing > 0:
                wait = max(wait, missing / self.rate)
        if wait > 0:
            return wait
        if len(self._buckets) > self._max_keys:
            self._prune(now)
        for key, n in demand.items():
            self._buckets[key] = (self._tokens(key, now) - n, now)
        return 0.0

    def _prune(self, now: float) -> None:
        """Forget full buckets (they are the default state anyway)."""
        full = [k for k in self._buckets if self._tokens(k, now) >= self.burst]
        for key in full:
            del self._buckets[key]
