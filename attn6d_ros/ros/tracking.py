"""Tracking state of the refinement node, free of ROS: the last refined poses, reused as priors.

When a frame arrives with an empty detection array, the node refines the live tracks instead: the poses it
refined last, younger than `max_age_s` (image stamps, so bags and simulated time behave) and scoring at least
`min_score`. A frame with detections replaces the whole track set with its refined results (the detector is
authoritative whenever it reports something); a tracked frame updates the tracks it refined and drops those
that failed or scored too low. `reset` forgets everything (the node's ~/reset_tracking service).

Thread safety: the node's inference worker updates the tracks while the executor thread may call `reset`, so
every method takes the lock.

`PendingImages` holds the images whose detections have not arrived yet (tracking.wait_s): those still without
detections after the wait are refined from the tracks, and detections arriving later for such an image are
recognised as late (each image is refined once). It is used by the executor thread only.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

T = TypeVar("T")


@dataclass(frozen=True)
class Track:
    """One tracked object instance.

    Attributes:
        instance_id: the name its outputs carry (TF child frame without prefix, Refinement.instance_id).
        detection_id: Detection3D.id to publish ('' when the detector set none).
        class_id: the object table id.
        T: (4, 4) last refined pose, camera optical frame of its image, metres.
        score: the refinement score of `T`.
        stamp_s: image stamp of `T`, seconds.
    """

    instance_id: str
    detection_id: str
    class_id: str
    T: np.ndarray
    score: float
    stamp_s: float


class Tracker:
    """The live tracks (see module docstring)."""

    def __init__(self) -> None:
        self._tracks: dict[str, Track] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._tracks)

    def priors(self, stamp_s: float, max_age_s: float, min_score: float) -> list[Track]:
        """The tracks usable for a frame stamped `stamp_s`; stale and weak ones are dropped for good."""
        with self._lock:
            alive = {
                key: track
                for key, track in self._tracks.items()
                if abs(stamp_s - track.stamp_s) <= max_age_s and track.score >= min_score
            }
            self._tracks = alive
            return list(alive.values())

    def replace(self, tracks: list[Track], min_score: float) -> None:
        """After a frame with detections: the tracks become its results scoring at least `min_score`."""
        with self._lock:
            self._tracks = {t.instance_id: t for t in tracks if t.score >= min_score}

    def update(self, refreshed: list[Track], lost: list[str], min_score: float) -> None:
        """After a tracked frame: refreshed tracks are kept if they score well enough, lost ones dropped."""
        with self._lock:
            for instance_id in lost:
                self._tracks.pop(instance_id, None)
            for track in refreshed:
                if track.score >= min_score:
                    self._tracks[track.instance_id] = track
                else:
                    self._tracks.pop(track.instance_id, None)

    def reset(self) -> int:
        """Forgets every track; returns how many there were."""
        with self._lock:
            count = len(self._tracks)
            self._tracks = {}
            return count


class PendingImages(Generic[T]):
    """Images waiting for their detections, by image stamp (ns), with arrival times (monotonic seconds).

    Args:
        capacity: most images waiting; beyond it the oldest stamp is forgotten (like a synchronizer queue).
        history: how many stamps of delivered and of tracked images are remembered.
    """

    def __init__(self, capacity: int, history: int = 256) -> None:
        self.capacity = capacity
        self._waiting: dict[int, tuple[T, float]] = {}
        self._delivered: deque[int] = deque(maxlen=history)
        self._tracked: dict[int, float] = {}
        self._history = history
        self.newest_ns = -1  # newest image stamp sent to be refined (`synced`, `release`)

    def __len__(self) -> int:
        return len(self._waiting)

    def add(self, stamp_ns: int, item: T, arrived_s: float) -> bool:
        """An image without detections so far; False (not kept) when its detections were delivered already."""
        if stamp_ns in self._delivered:
            return False
        self._waiting[stamp_ns] = (item, arrived_s)
        while len(self._waiting) > self.capacity:
            del self._waiting[min(self._waiting)]
        return True

    def delivered(self, stamp_ns: int) -> float | None:
        """Detections arrived for the image `stamp_ns`: it stops waiting. Returns the image's arrival time
        when it was already refined from the tracks (the detections are late), else None."""
        self._waiting.pop(stamp_ns, None)
        self._delivered.append(stamp_ns)
        return self._tracked.get(stamp_ns)

    def due(self, now_s: float, wait_s: float) -> list[tuple[int, T, float]]:
        """Removes and returns (stamp_ns, item, arrival) of the images that waited `wait_s` or longer, oldest
        stamp first."""
        ready = sorted(s for s, (_, arrived) in self._waiting.items() if now_s - arrived >= wait_s)
        return [(s, *self._waiting.pop(s)) for s in ready]

    def synced(self, stamp_ns: int) -> float | None:
        """A frame with detections for the image `stamp_ns` arrived (`delivered`). Returns the image's arrival
        time when it was already refined from the tracks (ignore the late detections); otherwise the frame
        is to be refined and becomes the newest sent."""
        late = self.delivered(stamp_ns)
        if late is None:
            self.newest_ns = max(self.newest_ns, stamp_ns)
        return late

    def release(self, now_s: float, wait_s: float, has_tracks: bool) -> list[tuple[int, T, float]]:
        """The images that waited `wait_s` or longer (`due`) and go to be refined from the tracks: only with
        tracks, and only newer than every frame sent (outputs never go back in time); they are marked
        `tracked`. The others are dropped."""
        released = []
        for stamp_ns, item, arrived_s in self.due(now_s, wait_s):
            if has_tracks and stamp_ns > self.newest_ns:
                self.newest_ns = stamp_ns
                self.tracked(stamp_ns, arrived_s)
                released.append((stamp_ns, item, arrived_s))
        return released

    def tracked(self, stamp_ns: int, arrived_s: float) -> None:
        """Records that the image `stamp_ns` went to the worker to be refined from the tracks."""
        self._tracked[stamp_ns] = arrived_s
        while len(self._tracked) > self._history:
            del self._tracked[min(self._tracked)]
