"""Records ROS 2 topics into a rosbag2 (MCAP or sqlite3) from rclpy raw subscriptions, written with rosbags.

What `attn6d-demo --record BAG` uses: each topic is subscribed with ``raw=True``, so the bytes that came over
DDS go into the bag unchanged (CDR, as `ros2 bag record` stores them), stamped with the node's clock on
arrival. The bag carries every message definition (bag_io.message_typestore), so attn6d-refine-bag and any
rosbag2 reader can decode it without the packages installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from attn6d_ros.ros.bag_io import create_writer, message_typestore


def ros_type_name(msg_class: type) -> str:
    """rclpy message class -> 'package/msg/Name' (e.g. sensor_msgs/msg/Image)."""
    return f"{msg_class.__module__.split('.')[0]}/msg/{msg_class.__name__}"


class TopicRecorder:
    """Writes every message of `topics` [(topic, rclpy message class)] arriving at `node` to a new bag.

    Args:
        node: the rclpy node whose executor delivers the messages (callbacks write on its thread).
        path: the bag folder to create; it must not exist.
        storage: 'mcap' or 'sqlite3'.
        depth: QoS history depth of the subscriptions. Each is reliable, or best effort when a publisher
            of its topic is (as `ros2 bag record` adapts to the publishers it sees).

    Raises:
        bag_io.BagError: the bag exists or cannot be created, or a type has no definition.
    """

    def __init__(
        self, node: Any, path: Path, storage: str, topics: list[tuple[str, type]], depth: int = 100
    ) -> None:
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        def qos(topic: str) -> QoSProfile:
            offered = [i.qos_profile.reliability for i in node.get_publishers_info_by_topic(topic)]
            best_effort = ReliabilityPolicy.BEST_EFFORT in offered
            reliability = (
                ReliabilityPolicy.BEST_EFFORT if best_effort else ReliabilityPolicy.RELIABLE
            )
            return QoSProfile(depth=depth, reliability=reliability)

        names = [ros_type_name(cls) for _, cls in topics]
        self.typestore = message_typestore([], names)
        self.writer = create_writer(Path(path), storage, overwrite=False)
        self.clock = node.get_clock()
        self.counts: dict[str, int] = {}
        self._subscriptions = []
        for (topic, cls), name in zip(topics, names, strict=True):
            connection = self.writer.add_connection(topic, name, typestore=self.typestore)
            self.counts[topic] = 0
            self._subscriptions.append(
                node.create_subscription(
                    cls, topic, lambda raw, c=connection: self._write(c, raw), qos(topic), raw=True
                )
            )

    def _write(self, connection: Any, raw: bytes) -> None:
        if self.writer is None:
            return
        self.writer.write(connection, self.clock.now().nanoseconds, raw)
        self.counts[connection.topic] += 1

    def close(self) -> None:
        """Finishes the bag (metadata.yaml); later messages are ignored."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None
