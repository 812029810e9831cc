"""A second process for cross-process ROS tests: publishes one message of each of our three test types.

Usage: python ros_peer.py SECONDS. Publishes attn6d_ros/RefinementArray on `peer/details`,
vision_msgs/Detection3DArray on `peer/detections` and tf2_msgs/TFMessage on `/tf` at 20 Hz until SECONDS pass.
"""

import sys
import time

import rclpy
from attn6d_ros.msg import Refinement, RefinementArray
from geometry_msgs.msg import Pose, TransformStamped
from tf2_msgs.msg import TFMessage
from vision_msgs.msg import Detection3D, Detection3DArray, ObjectHypothesisWithPose


def _messages() -> tuple[RefinementArray, Detection3DArray, TFMessage]:
    details = RefinementArray()
    details.header.frame_id = "camera_optical_frame"
    details.latency_ms = 12.5
    refinement = Refinement(object_id="ape", instance_id="ape_1", score=0.75, converged=True)
    refinement.refined_pose.position.z = 0.6
    refinement.stage_poses = [Pose(), Pose()]
    details.refinements = [refinement]

    detections = Detection3DArray()
    detections.header.frame_id = "camera_optical_frame"
    detection = Detection3D(id="obj-7")
    hypothesis = ObjectHypothesisWithPose()
    hypothesis.hypothesis.class_id = "ape"
    hypothesis.hypothesis.score = 0.5
    hypothesis.pose.pose.position.z = 0.6
    detection.results = [hypothesis]
    detection.bbox.size.x = 0.1
    detections.detections = [detection]

    transform = TransformStamped()
    transform.header.frame_id = "camera_optical_frame"
    transform.child_frame_id = "ape_1"
    transform.transform.rotation.w = 1.0
    return details, detections, TFMessage(transforms=[transform])


def main() -> None:
    seconds = float(sys.argv[1])
    rclpy.init()
    node = rclpy.create_node("attn6d_test_peer")
    publishers = [
        node.create_publisher(RefinementArray, "peer/details", 10),
        node.create_publisher(Detection3DArray, "peer/detections", 10),
        node.create_publisher(TFMessage, "/tf", 10),
    ]
    messages = _messages()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for publisher, message in zip(publishers, messages, strict=True):
            publisher.publish(message)
        rclpy.spin_once(node, timeout_sec=0.05)
    node.destroy_node()
    rclpy.shutdown()


if __name__ == "__main__":
    main()
