"""The node's QoS profiles, and what it reports at start-up about its middleware: the RMW, the Fast DDS
profile for large images, and which optional ROS packages (or our fallbacks) are in use."""

from __future__ import annotations

import os

import rclpy
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from attn6d_ros.paths import share_dir
from attn6d_ros.ros import codec, sync, tf_publisher

# Fast DDS 3 (Kilted) reads the first, Fast DDS 2 (Humble, Jazzy) the second.
PROFILE_VARIABLES = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")


def input_qos(reliability: str, depth: int) -> QoSProfile:
    """A subscription's QoS: keep-last `depth`, volatile, 'reliable' or 'best_effort'."""
    return QoSProfile(
        depth=depth,
        history=HistoryPolicy.KEEP_LAST,
        durability=DurabilityPolicy.VOLATILE,
        reliability=ReliabilityPolicy.RELIABLE
        if reliability == "reliable"
        else ReliabilityPolicy.BEST_EFFORT,
    )


def fallbacks_text() -> str:
    """Which implementation of each optional ROS package is in use (docs/node.md, "Fallbacks")."""
    return (
        "synchronizer "
        + ("message_filters" if sync.USING_MESSAGE_FILTERS else "fallback (attn6d_ros.ros.sync)")
        + ", TF broadcaster "
        + ("tf2_ros" if tf_publisher.USING_TF2_ROS else "fallback (attn6d_ros.ros.tf_publisher)")
        + ", image conversion "
        + ("cv_bridge" if codec.USING_CV_BRIDGE else "numpy (attn6d_ros.ros.codec)")
    )


def dds_profile_hint() -> str:
    """Where the package's Fast DDS profile for large images is (docs/node.md, 'Large images')."""
    try:
        return str(share_dir() / "config" / "fastdds_large_frames.xml")
    except FileNotFoundError:
        return "config/fastdds_large_frames.xml of the attn6d_ros package"


def dds_text() -> str:
    """The RMW and the Fast DDS profile in effect, for the start-up line."""
    rmw = (
        os.environ.get("RMW_IMPLEMENTATION") or rclpy.utilities.get_rmw_implementation_identifier()
    )
    profiles = [os.environ[v] for v in PROFILE_VARIABLES if os.environ.get(v)]
    if "fastrtps" not in rmw:
        return f"RMW {rmw}"
    if profiles:
        return f"RMW {rmw}, Fast DDS profile {profiles[0]}"
    return (
        f"RMW {rmw}, no Fast DDS profile: best-effort images larger than 512 KiB from other processes "
        f"may be lost (use {dds_profile_hint()}; docs/node.md, 'Large images')"
    )
