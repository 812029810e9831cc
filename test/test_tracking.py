"""Tracking state and the latest-only slot: the ROS-free parts of the node's behaviour."""

import threading

import numpy as np

from attn6d_ros.ros.backpressure import LatestSlot
from attn6d_ros.ros.tracking import PendingImages, Track, Tracker


def _track(name: str, score: float = 0.9, stamp_s: float = 10.0) -> Track:
    return Track(name, "", "demo_object", np.eye(4), score, stamp_s)


def test_priors_drop_stale_and_weak_tracks_for_good() -> None:
    tracker = Tracker()
    tracker.replace([_track("a", stamp_s=10.0), _track("b", stamp_s=9.0), _track("c", 0.35)], 0.3)
    assert {t.instance_id for t in tracker.priors(10.5, max_age_s=1.0, min_score=0.4)} == {"a"}
    assert len(tracker) == 1  # b (1.5 s old) and c (0.35 < 0.4) are gone, not just skipped


def test_replace_keeps_only_results_above_min_score() -> None:
    tracker = Tracker()
    tracker.replace([_track("a", 0.2), _track("b", 0.8)], 0.3)
    assert [t.instance_id for t in tracker.priors(10.0, 1.0, 0.0)] == ["b"]


def test_update_refreshes_and_loses_tracks() -> None:
    tracker = Tracker()
    tracker.replace([_track("a"), _track("b"), _track("c")], 0.3)
    tracker.update([_track("a", 0.95, 11.0), _track("b", 0.1, 11.0)], lost=["c"], min_score=0.3)
    (only,) = tracker.priors(11.0, 1.0, 0.0)
    assert (only.instance_id, only.score, only.stamp_s) == ("a", 0.95, 11.0)


def test_reset_reports_how_many_tracks_it_cleared() -> None:
    tracker = Tracker()
    tracker.replace([_track("a"), _track("b")], 0.0)
    assert tracker.reset() == 2 and len(tracker) == 0 and tracker.reset() == 0


def test_latest_slot_replaces_waiting_items_and_counts_drops() -> None:
    slot: LatestSlot[int] = LatestSlot()
    assert [slot.put(i) for i in range(200)].count(True) == 199
    assert slot.dropped == 199 and slot.take(timeout=0.0) == 199 and slot.take(timeout=0.0) is None


def test_latest_slot_keeps_a_higher_priority_item_waiting() -> None:
    slot: LatestSlot[str] = LatestSlot()
    assert slot.put("detections 1", priority=1) is False
    assert slot.put("tracked 2") is True  # refused: detections wait
    assert slot.put("detections 3", priority=1) is True  # replaces the older detections
    assert slot.dropped == 2 and slot.take(timeout=0.0) == "detections 3"
    slot.put("tracked 4")
    slot.put("tracked 5")
    assert slot.take(timeout=0.0) == "tracked 5" and slot.dropped == 3


def test_latest_slot_wakes_a_waiting_consumer_and_close_releases_it() -> None:
    slot: LatestSlot[str] = LatestSlot()
    got = []
    consumer = threading.Thread(target=lambda: got.append(slot.take(timeout=5.0)))
    consumer.start()
    slot.put("frame")
    consumer.join(timeout=5.0)
    assert got == ["frame"]
    waiter = threading.Thread(target=lambda: got.append(slot.take(timeout=30.0)))
    waiter.start()
    slot.close()
    waiter.join(timeout=5.0)
    assert not waiter.is_alive() and got == ["frame", None]


def test_pending_images_come_due_after_the_wait_oldest_first() -> None:
    pending: PendingImages[str] = PendingImages(capacity=3)
    assert pending.add(20, "b", arrived_s=1.0) and pending.add(10, "a", arrived_s=1.05)
    assert pending.due(now_s=1.04, wait_s=0.05) == []
    assert pending.due(now_s=1.10, wait_s=0.05) == [(10, "a", 1.05), (20, "b", 1.0)]
    assert len(pending) == 0 and pending.due(now_s=9.0, wait_s=0.0) == []


def test_pending_images_with_detections_stop_waiting_and_late_ones_are_recognised() -> None:
    pending: PendingImages[str] = PendingImages(capacity=3)
    pending.add(10, "a", 1.0)
    assert pending.delivered(10) is None and len(pending) == 0  # detections in time
    assert pending.add(10, "a again", 1.1) is False  # its detections came first
    pending.add(20, "b", 2.0)
    ((stamp, item, arrived),) = pending.due(now_s=3.0, wait_s=0.5)
    assert item == "b"
    pending.tracked(stamp, arrived)
    assert pending.delivered(20) == 2.0  # late: the image was refined from the tracks


def test_pending_images_forget_the_oldest_beyond_capacity() -> None:
    pending: PendingImages[int] = PendingImages(capacity=2, history=2)
    for stamp in (1, 2, 3):
        pending.add(stamp, stamp, 0.0)
    assert [s for s, _, _ in pending.due(1.0, 0.0)] == [2, 3]
    for stamp in (1, 2, 3):
        pending.tracked(stamp, 0.0)
    assert pending.delivered(1) is None and pending.delivered(3) == 0.0


def test_released_images_are_newer_than_every_frame_sent_and_need_tracks() -> None:
    pending: PendingImages[str] = PendingImages(capacity=8)
    assert (
        pending.synced(20) is None and pending.newest_ns == 20
    )  # a frame with detections went out
    for stamp in (10, 30, 40):
        pending.add(stamp, f"i{stamp}", 1.0)
    assert pending.release(now_s=1.01, wait_s=0.5, has_tracks=True) == []  # still waiting
    assert pending.release(now_s=2.0, wait_s=0.5, has_tracks=False) == [] and len(pending) == 0
    for stamp in (10, 30, 40):
        pending.add(stamp, f"i{stamp}", 1.0)
    # 10 is older than the frame sent (dropped); 30 and 40 go, in stamp order, and are marked tracked.
    assert pending.release(2.0, 0.5, has_tracks=True) == [(30, "i30", 1.0), (40, "i40", 1.0)]
    assert (
        pending.newest_ns == 40 and pending.synced(30) == 1.0
    )  # late detections for a tracked image
