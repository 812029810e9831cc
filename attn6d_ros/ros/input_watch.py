"""Why no synchronized frame comes although images and detections arrive: the stamps seen per input, for the
node's warning and /diagnostics (free of ROS)."""

from __future__ import annotations

from collections import deque

INPUTS = ("image", "camera_info", "detections")
STAMPS_KEPT = 3  # latest stamps per input named in the warning


class InputWatch:
    """Records when each input last arrived and its latest stamps; `sync_problem` says what is wrong."""

    def __init__(self) -> None:
        self._stamps: dict[str, deque[str]] = {k: deque(maxlen=STAMPS_KEPT) for k in INPUTS}
        self._last_seen: dict[str, float] = {}
        self._last_sync = 0.0
        self._first_both = 0.0

    def arrived(self, kind: str, stamp_text: str, now: float) -> None:
        """An `image`, `camera_info` or `detections` message stamped `stamp_text` arrived at `now` (s)."""
        self._last_seen[kind] = now
        self._stamps[kind].append(stamp_text)

    def synced(self, now: float) -> None:
        """The synchronizer delivered a frame at `now` (monotonic seconds)."""
        self._last_sync = now

    def sync_problem(self, now: float, warn_after_s: float, slop_s: float) -> str:
        """'' or why no frame synchronized for `warn_after_s` while images and detections both arrive,
        naming the latest stamps of each input (`slop_s`: the synchronizer's sync.slop)."""
        recent = {k: now - t <= warn_after_s for k, t in self._last_seen.items()}
        if not (recent.get("image") and recent.get("detections")):
            self._first_both = 0.0
            return ""
        if not self._first_both:
            self._first_both = now
        waiting_since = max(self._first_both, self._last_sync)
        if now - waiting_since < warn_after_s:
            return ""
        stamps = {k: list(v) for k, v in self._stamps.items()}
        missing = "" if recent.get("camera_info") else " No camera_info arrives: it is needed too."
        return (
            f"no synchronized frame for {now - waiting_since:.1f} s although images and detections arrive "
            f"(sync.slop {slop_s} s). Latest stamps: image {stamps['image']}, camera_info "
            f"{stamps['camera_info']}, detections {stamps['detections']}; the detector must copy the "
            f"image header's stamp.{missing}"
        )
