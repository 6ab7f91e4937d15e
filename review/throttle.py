"""Login attempts limited per client address: after MAX_FAILURES failed logins within WINDOW_S seconds, further
attempts from that address are refused until the oldest failure leaves the window. Pure Python; the web layer asks
`wait(address)` before checking a password and reports the outcome."""
from __future__ import annotations

import threading
import time
from collections import deque

MAX_FAILURES = 5
WINDOW_S = 300.0


class LoginThrottle:
    def __init__(self, max_failures: int = MAX_FAILURES, window_s: float = WINDOW_S, clock=time.monotonic):
        self.max_failures, self.window_s, self._clock = max_failures, window_s, clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, address: str, now: float) -> deque[float]:
        q = self._failures.get(address, deque())
        while q and now - q[0] >= self.window_s:
            q.popleft()
        if not q:
            self._failures.pop(address, None)
        return q

    def wait(self, address: str) -> float:
        """Seconds this address must wait before its next attempt (0: go ahead)."""
        with self._lock:
            now = self._clock()
            q = self._recent(address, now)
            return 0.0 if len(q) < self.max_failures else self.window_s - (now - q[0])

    def failed(self, address: str) -> None:
        with self._lock:
            now = self._clock()
            self._recent(address, now)
            self._failures.setdefault(address, deque()).append(now)

    def succeeded(self, address: str) -> None:
        with self._lock:
            self._failures.pop(address, None)
