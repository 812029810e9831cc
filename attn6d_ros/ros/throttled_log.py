"""Warnings logged at most every few seconds per kind of problem, or once (rclpy throttles per call site)."""

from __future__ import annotations

import time
from collections.abc import Callable

REPEAT_S = 5.0  # a repeated per-frame warning is logged at most this often (per key)
MAX_KEYS = (
    500  # keys remembered; the table is cleared beyond this (keys may carry values from messages)
)


class ThrottledLog:
    """Wraps a logging function (e.g. a node logger's `warning`)."""

    def __init__(self, warning: Callable[[str], object]) -> None:
        self._warning = warning
        self._last: dict[str, float] = {}
        self._once: set[str] = set()

    def warn(self, key: str, message: str, repeat_s: float = REPEAT_S) -> None:
        """Logs `message` unless a warning with `key` was logged in the last `repeat_s` seconds."""
        now = time.monotonic()
        if now - self._last.get(key, -1e9) >= repeat_s:
            if len(self._last) > MAX_KEYS:
                self._last.clear()
            self._last[key] = now
            self._warning(message)

    def warn_once(self, key: str, message: str) -> None:
        """Logs `message` the first time `key` is seen."""
        if key not in self._once and len(self._once) < MAX_KEYS:
            self._once.add(key)
            self._warning(message)
