"""A latest-only slot between the executor thread (producer) and the inference worker (consumer).

The executor puts every synchronized frame into the slot; a frame still waiting when a newer one arrives is
replaced and counted as dropped. Memory is therefore bounded by one waiting frame plus the one being
processed, however fast frames arrive, and the worker always refines the newest frame (ros_conventions.md
§3.11). A `priority` keeps frames with detections ahead of frames refined from tracks alone: a waiting item is
replaced only by one of the same or a higher priority; a lower one is dropped instead.
"""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

T = TypeVar("T")


class LatestSlot(Generic[T]):
    """Holds at most one item; `put` replaces a waiting item, `take` blocks until there is one."""

    def __init__(self) -> None:
        self._item: T | None = None
        self._priority = 0
        self._has_item = False
        self._closed = False
        self._cond = threading.Condition()
        self.dropped = (
            0  # items replaced before they were taken, or refused for a higher-priority one
        )

    def put(self, item: T, priority: int = 0) -> bool:
        """Stores `item` unless a waiting item has a higher `priority`; returns True when an item was dropped
        (the waiting one it replaced, or `item` itself when it was refused)."""
        with self._cond:
            if not self._has_item:
                self._item, self._priority, self._has_item = item, priority, True
                self._cond.notify()
                return False
            self.dropped += 1
            if priority >= self._priority:
                self._item, self._priority = item, priority
            return True

    def take(self, timeout: float | None = None) -> T | None:
        """The waiting item (removing it), or None after `timeout` seconds or once closed."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._has_item or self._closed, timeout):
                return None
            if not self._has_item:
                return None
            item, self._item, self._has_item = self._item, None, False
            return item

    def close(self) -> None:
        """Wakes the consumer for good; later `take` calls return None at once."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
