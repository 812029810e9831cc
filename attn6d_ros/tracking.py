"""Tracking state of the refinement node, free of ROS: the last refined poses, reused as priors.

When a frame arrives with an empty detection array, the node refines the live tracks instead: the poses it
refined last, younger than `max_age_s` (image stamps, so bags and simulated time behave) and scoring at least
`min_score`. A frame with detections replaces the whole track set with its refined results (the detector is
authoritative whenever it reports something); a tracked frame updates the tracks it refined and drops those
that failed or scored too low. `reset` forgets everything (the node's ~/reset_tracking service).

Thread safety: the node's inference worker updates the tracks while the executor thread may call `reset`, so
every method takes the lock.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np


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
