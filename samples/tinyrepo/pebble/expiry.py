"""Keys that expire: a heap of deadlines checked lazily on every access."""

from __future__ import annotations

import heapq
import time


class Expiry:
    def __init__(self, clock=time.monotonic) -> None:
        self._clock = clock
        self._deadlines: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []

    def expire_in(self, key: str, seconds: float) -> None:
        deadline = self._clock() + seconds
        self._deadlines[key] = deadline
        heapq.heappush(self._heap, (deadline, key))

    def persist(self, key: str) -> None:
        self._deadlines.pop(key, None)

    def due(self) -> list[str]:
        """Keys whose deadline has passed, each reported once."""
        now, expired = self._clock(), []
        while self._heap and self._heap[0][0] <= now:
            deadline, key = heapq.heappop(self._heap)
            if self._deadlines.get(key) == deadline:
                del self._deadlines[key]
                expired.append(key)
        return expired
