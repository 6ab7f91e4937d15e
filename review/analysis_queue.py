"""Analyses run one at a time, first come first served, on one worker thread, so one heavy image cannot take
every core from the reviewers who are only reading; a request for a case already queued joins that job. A waiting
request can ask its place in the line (what the screen shows). Pure Python."""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from typing import Any


class AnalysisQueue:
    def __init__(self):
        self._lock = threading.Lock()
        self._waiting: OrderedDict[Hashable, tuple[Callable[[], Any], Future]] = OrderedDict()
        self._running: Hashable | None = None
        self._current: Future | None = None
        self._wake = threading.Condition(self._lock)
        self._worker = threading.Thread(target=self._run, name="analysis-queue", daemon=True)
        self._worker.start()

    def submit(self, key: Hashable, fn: Callable[[], Any]) -> Future:
        with self._lock:
            if key in self._waiting:
                return self._waiting[key][1]
            if self._running == key and self._current is not None:
                return self._current
            fut: Future = Future()
            self._waiting[key] = (fn, fut)
            self._wake.notify()
            return fut

    def position(self, key: Hashable) -> int:
        """0: running now (or not queued); k >= 1: k-th in line behind the running one."""
        with self._lock:
            for i, k in enumerate(self._waiting, start=1):
                if k == key:
                    return i
            return 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._waiting) + (self._running is not None)

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._waiting:
                    self._wake.wait()
                key, (fn, fut) = self._waiting.popitem(last=False)
                self._running, self._current = key, fut
            if fut.set_running_or_notify_cancel():
                try:
                    fut.set_result(fn())
                except BaseException as exc:  # handed to the waiting request, which reports it
                    fut.set_exception(exc)
            with self._lock:
                self._running, self._current = None, None
