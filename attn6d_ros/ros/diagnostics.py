"""The refinement node's /diagnostics: counters and rate windows its threads fill (`NodeStats`), and the
diagnostic_msgs/DiagnosticStatus built from them every diagnostics.period_s (`diagnostic_status`)."""

from __future__ import annotations

import statistics
import threading
import time
from collections import deque

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

from attn6d_ros.ros import codec, sync, tf_publisher

RATE_WINDOW_S = 5.0  # rates are averaged over this many seconds
# Images are missing when, over RATE_WINDOW_S, at least this many camera_infos came and fewer than
# IMAGE_SHARE_MIN of that many images: a camera sends both at the same rate.
MIN_CAMERA_INFOS = 5
IMAGE_SHARE_MIN = 0.5
LATENCY_SAMPLES = 100  # median latency over the last this many frames
ARRIVAL_KINDS = ("image", "camera_info", "detections", "synced", "processed")
COUNTERS = (
    "synced",
    "processed",
    "rejected_frames",
    "failed_detections",
    "below_min_score",
    "internal_errors",
    "tracked_images",
    "late_detections",
    "detections_over_max",
)


class NodeStats:
    """Counters and sliding windows; written by the executor and the worker thread, read by the timer."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.arrivals: dict[str, deque[float]] = {k: deque(maxlen=2000) for k in ARRIVAL_KINDS}
        self.latency_ms: deque[float] = deque(maxlen=LATENCY_SAMPLES)
        self.compute_ms: deque[float] = deque(maxlen=LATENCY_SAMPLES)
        self.counts = dict.fromkeys(COUNTERS, 0)
        self.totals = dict.fromkeys(ARRIVAL_KINDS, 0)  # arrivals since start

    def arrived(self, kind: str, now: float) -> None:
        """One message or frame of `kind` (ARRIVAL_KINDS) at monotonic time `now`, seconds."""
        with self.lock:
            self.arrivals[kind].append(now)
            self.totals[kind] += 1

    def add(self, key: str, n: int = 1) -> None:
        """Adds `n` to the counter `key` (COUNTERS)."""
        with self.lock:
            self.counts[key] += n

    def frame_done(self, latency_ms: float, compute_ms: float) -> None:
        """A published frame: stamp-to-publish latency and network time (0: nothing was refined)."""
        with self.lock:
            self.latency_ms.append(latency_ms)
            if compute_ms:
                self.compute_ms.append(compute_ms)

    def rate(self, kind: str, now: float) -> float:
        """Arrivals of `kind` per second over the last RATE_WINDOW_S."""
        with self.lock:
            times = self.arrivals[kind]
            return sum(1 for t in times if now - t <= RATE_WINDOW_S) / RATE_WINDOW_S


def missing_images(stats: NodeStats, now: float, profile_hint: str) -> str:
    """'' or why images seem lost: camera_info keeps arriving while images do not, or far fewer do.

    Args:
        profile_hint: path of the Fast DDS profile that fixes the usual cause (fastdds_large_frames.xml).
    """
    infos = stats.rate("camera_info", now) * RATE_WINDOW_S
    images = stats.rate("image", now) * RATE_WINDOW_S
    if infos < MIN_CAMERA_INFOS or images >= IMAGE_SHARE_MIN * infos:
        return ""
    return (
        f"camera_info arrives ({infos / RATE_WINDOW_S:.1f} Hz) but images do not "
        f"({images / RATE_WINDOW_S:.1f} Hz). Large best-effort images from another process are lost when "
        "Fast DDS's shared-memory segments are smaller than a frame (512 KiB by default; a 640x480 rgb8 "
        "image is 900 KiB): start the camera driver, the publisher, with FASTDDS_DEFAULT_PROFILES_FILE "
        f"(Fast DDS 2: FASTRTPS_DEFAULT_PROFILES_FILE) set to {profile_hint} (docs/node.md, 'Large images'), "
        "or, if the camera publishes reliable, set qos.image.reliability to reliable"
    )


def diagnostic_status(
    stats: NodeStats,
    *,
    name: str,
    device: str,
    worker_alive: bool,
    sync_problem: str,
    dropped: int,
    tracks: int,
    image_problem: str = "",
) -> DiagnosticStatus:
    """The node's status: ERROR when the worker stopped, WARN for missing images (`missing_images`), a sync
    problem or internal errors, in that order."""
    now = time.monotonic()
    with stats.lock:
        counts = dict(stats.counts)
        totals = dict(stats.totals)
        latency = statistics.median(stats.latency_ms) if stats.latency_ms else float("nan")
        compute = statistics.median(stats.compute_ms) if stats.compute_ms else float("nan")
    status = DiagnosticStatus(name=name, hardware_id=device)
    if not worker_alive:
        status.level, status.message = DiagnosticStatus.ERROR, "inference worker stopped"
    elif image_problem:
        status.level, status.message = DiagnosticStatus.WARN, image_problem
    elif sync_problem:
        status.level, status.message = DiagnosticStatus.WARN, sync_problem
    elif counts["internal_errors"]:
        status.level = DiagnosticStatus.WARN
        status.message = (
            f"{counts['internal_errors']} frame(s) failed with an internal error (see log)"
        )
    else:
        status.level, status.message = DiagnosticStatus.OK, "ok"
    values = {
        "input rate image (Hz)": f"{stats.rate('image', now):.2f}",
        "input rate camera_info (Hz)": f"{stats.rate('camera_info', now):.2f}",
        "input rate detections (Hz)": f"{stats.rate('detections', now):.2f}",
        "synchronized rate (Hz)": f"{stats.rate('synced', now):.2f}",
        "processed rate (Hz)": f"{stats.rate('processed', now):.2f}",
        "received images": str(totals["image"]),
        "received camera_infos": str(totals["camera_info"]),
        "received detection arrays": str(totals["detections"]),
        "synchronized frames": str(counts["synced"]),
        "processed frames": str(counts["processed"]),
        "dropped frames": str(dropped),
        "rejected frames": str(counts["rejected_frames"]),
        "failed detections": str(counts["failed_detections"]),
        "below min_score": str(counts["below_min_score"]),
        "tracked images without detections": str(counts["tracked_images"]),
        "late detections ignored": str(counts["late_detections"]),
        "detections dropped over max_detections": str(counts["detections_over_max"]),
        "internal errors": str(counts["internal_errors"]),
        "median latency (ms)": f"{latency:.1f}",
        "median compute (ms)": f"{compute:.1f}",
        "device": device,
        "tracks": str(tracks),
        "synchronizer": "message_filters" if sync.USING_MESSAGE_FILTERS else "fallback",
        "tf broadcaster": "tf2_ros" if tf_publisher.USING_TF2_ROS else "fallback",
        "image conversion": "cv_bridge" if codec.USING_CV_BRIDGE else "numpy",
    }
    status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
    return status
