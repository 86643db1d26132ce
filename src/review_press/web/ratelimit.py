"""In-memory token buckets: a per-IP and a per-address limit on subscribe requests.

Each key (an IP address, a normalized email address) owns a bucket of `capacity` tokens
that refills at `per_second`; a request takes one token or is refused with the seconds to
wait (the `Retry-After` of a 429). The table of buckets is bounded, so a flood of distinct
keys cannot grow memory without limit. One process, one table: behind several workers each
worker limits on its own, which only makes the limit N times looser.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Rate:
    """A bucket's shape: a burst of `capacity` requests, then one every `1 / per_second` s."""

    capacity: float
    per_second: float

    @classmethod
    def per(cls, capacity: float, seconds: float) -> Rate:
        """`capacity` requests at once, refilling fully over `seconds`."""
        return cls(capacity=capacity, per_second=capacity / seconds)


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class TokenBuckets:
    """A bounded table of token buckets of one `Rate`, keyed by any string."""

    def __init__(self, rate: Rate, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Take one token for `key`: 0.0 when allowed, else the seconds until one is free."""
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                self._make_room(now)
                bucket = self._buckets[key] = _Bucket(tokens=self.rate.capacity, stamp=now)
            bucket.tokens = min(self.rate.capacity, bucket.tokens + (now - bucket.stamp) * self.rate.per_second)
            bucket.stamp = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            return (1.0 - bucket.tokens) / self.rate.per_second

    def __len__(self) -> int:
        return len(self._buckets)

    def _make_room(self, now: float) -> None:
        """Keep the table under `max_keys`: drop full buckets first, then the oldest half."""
        if len(self._buckets) < self.max_keys:
            return
        refill = self.rate.capacity / self.rate.per_second
        self._buckets = {k: b for k, b in self._buckets.items() if now - b.stamp < refill}
        if len(self._buckets) >= self.max_keys:
            keep = sorted(self._buckets.items(), key=lambda kv: kv[1].stamp)[len(self._buckets) // 2 :]
            self._buckets = dict(keep)


def retry_after(seconds: float) -> str:
    """A `Retry-After` header value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))
