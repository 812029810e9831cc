"""Approximate-time synchronisation of several topics: message_filters when importable, else a fallback.

`Subscriber` and `ApproximateTimeSynchronizer` are message_filters' classes where the package is installed
(`USING_MESSAGE_FILTERS`), and the small implementations below otherwise (the PyPI ROS wheels have no
message_filters, environment.md §5). The fallback keeps message_filters' Python semantics, so the node behaves
the same either way:

- every input keeps up to `queue_size` messages keyed by header stamp (a newer message with the same stamp
  replaces the older one; beyond `queue_size` the oldest stamp is dropped);
- each arriving message is matched against the other inputs' queued messages whose stamps lie within `slop`
  seconds of its own, nearest first; the first combination whose whole spread (newest minus oldest stamp) is
  *strictly* below `slop` is delivered to the callbacks, and exactly those messages leave their queues;
- older unmatched messages stay queued until the queue overflows (they may still match a late partner);
- messages without a header are refused unless `allow_headerless`, which stamps them with the ROS time.

The callbacks run under the synchronizer's lock, as in message_filters: keep them cheap.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from typing import Any

from attn6d_ros.ros import codec

try:
    from message_filters import ApproximateTimeSynchronizer, Subscriber

    USING_MESSAGE_FILTERS = True
except ImportError:
    USING_MESSAGE_FILTERS = False


class SimpleFilter:
    """A source of messages that calls registered callbacks (message_filters.SimpleFilter's interface)."""

    def __init__(self) -> None:
        self.callbacks: dict[int, tuple[Callable, tuple]] = {}
        self._next_id = 0

    def registerCallback(self, callback: Callable, *args: Any) -> int:
        """Calls ``callback(*messages, *args)`` for every message (tuple) this filter emits; returns an id."""
        connection = self._next_id
        self._next_id += 1
        self.callbacks[connection] = (callback, args)
        return connection

    def signalMessage(self, *msgs: Any) -> None:
        for callback, args in list(self.callbacks.values()):
            callback(*(msgs + args))


class _FallbackSubscriber(SimpleFilter):
    """A subscription as a filter: ``Subscriber(node, Image, "image", qos_profile=...)``.

    Keyword arguments other than `qos_profile` go to `node.create_subscription` (e.g. event_callbacks).
    """

    def __init__(
        self, node: Any, msg_type: type, topic: str, qos_profile: Any = 10, **kwargs: Any
    ) -> None:
        super().__init__()
        self.node = node
        self.topic = topic
        self.sub = node.create_subscription(
            msg_type, topic, self.signalMessage, qos_profile, **kwargs
        )

    def getTopic(self) -> str:
        return self.sub.topic_name


class _FallbackApproximateTimeSynchronizer(SimpleFilter):
    """Delivers sets of messages, one per input, whose stamps differ by less than `slop` seconds.

    Args:
        fs: the input filters (e.g. Subscribers), in the order the callback receives their messages.
        queue_size: messages kept per input (>= 1).
        slop: largest stamp spread of a set, seconds (> 0).
        allow_headerless: accept messages without header.stamp, stamped on arrival with the ROS time.
    """

    def __init__(
        self, fs: list[SimpleFilter], queue_size: int, slop: float, allow_headerless: bool = False
    ) -> None:
        super().__init__()
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        if not slop > 0:
            raise ValueError(f"slop must be > 0 seconds, got {slop}")
        self.queue_size = int(queue_size)
        self.slop_ns = round(slop * 1e9)
        self.allow_headerless = allow_headerless
        self.queues: list[dict[int, Any]] = [{} for _ in fs]
        self.lock = threading.Lock()
        self.inputs = list(fs)
        for index, f in enumerate(fs):
            f.registerCallback(self.add, self.queues[index], index)

    def add(self, msg: Any, my_queue: dict[int, Any], my_queue_index: int | None = None) -> None:
        """Queues one message of input `my_queue_index` and delivers a matching set if there is one."""
        stamp_ns = _stamp_ns(msg)
        if stamp_ns is None:
            if not self.allow_headerless:
                return  # message_filters warns once; the node's sync watchdog names the problem
            from rclpy.clock import ROSClock

            stamp_ns = ROSClock().now().nanoseconds
        if my_queue_index is None:
            my_queue_index = next(i for i, q in enumerate(self.queues) if q is my_queue)
        with self.lock:
            my_queue[stamp_ns] = msg
            while len(my_queue) > self.queue_size:
                del my_queue[min(my_queue)]
            candidates = []
            for index, queue in enumerate(self.queues):
                if index == my_queue_index:
                    candidates.append([stamp_ns])
                    continue
                near = sorted(
                    (s for s in queue if abs(s - stamp_ns) <= self.slop_ns),
                    key=lambda s: abs(s - stamp_ns),
                )
                if not near:
                    return
                candidates.append(near)
            for stamps in itertools.product(*candidates):
                if max(stamps) - min(stamps) < self.slop_ns:
                    msgs = [queue.pop(s) for queue, s in zip(self.queues, stamps, strict=True)]
                    self.signalMessage(*msgs)
                    return


def _stamp_ns(msg: Any) -> int | None:
    """The message's header stamp in nanoseconds; None for a message without header.stamp."""
    header = getattr(msg, "header", None)
    if getattr(header, "stamp", None) is None:
        return None
    return codec.stamp_ns(header)


if not USING_MESSAGE_FILTERS:
    Subscriber = _FallbackSubscriber
    ApproximateTimeSynchronizer = _FallbackApproximateTimeSynchronizer
