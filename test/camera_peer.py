"""A stand-in camera driver for cross-process tests: publishes rgb8 images and camera_info, best-effort.

Usage: python camera_peer.py WIDTH HEIGHT COUNT RATE_HZ. Waits until something subscribes to both `image` and
`camera_info`, then publishes COUNT frames at RATE_HZ with the sensor-data QoS (best effort, keep last 5), as
camera drivers do, and exits. The Fast DDS profile comes from the environment, as for a real driver.
"""

import sys
import time

import numpy as np
import rclpy
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image

from attn6d_ros.ros import codec


def main() -> None:
    width, height, count = (int(a) for a in sys.argv[1:4])
    rate_hz = float(sys.argv[4])
    rclpy.init()
    node = rclpy.create_node("attn6d_test_camera")
    image_pub = node.create_publisher(Image, "image", qos_profile_sensor_data)
    info_pub = node.create_publisher(CameraInfo, "camera_info", qos_profile_sensor_data)
    deadline = time.monotonic() + 60.0
    while image_pub.get_subscription_count() == 0 or info_pub.get_subscription_count() == 0:
        if time.monotonic() > deadline:
            sys.exit("camera_peer: no subscriber for image and camera_info after 60 s")
        rclpy.spin_once(node, timeout_sec=0.05)
    time.sleep(0.5)  # both directions of discovery
    types = codec.rclpy_types()
    pixels = np.random.default_rng(0).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    K = np.array([[500.0, 0.0, (width - 1) / 2], [0.0, 500.0, (height - 1) / 2], [0.0, 0.0, 1.0]])
    header = codec.header_msg(types, 0, "camera_optical_frame")
    image = codec.image_msg(types, pixels, header)  # one message, restamped for every frame
    info = codec.camera_info_msg(types, K, width, height, header)
    for _ in range(count):
        header = codec.header_msg(
            types, node.get_clock().now().nanoseconds, "camera_optical_frame"
        )
        image.header = info.header = header
        image_pub.publish(image)
        info_pub.publish(info)
        time.sleep(1.0 / rate_hz)
    print(f"camera_peer: published {count} frames of {width}x{height}", flush=True)
    time.sleep(1.0)  # let the last ones go out before the participant leaves
    node.destroy_node()
    rclpy.shutdown()


if __name__ == "__main__":
    main()
