"""attn6d_ros: multi-stage spatial-attention 6D pose refinement (Stevšić & Hilliges, 3DV 2020) for ROS 2.

The core (geometry, mesh, crop, render, network, refiner, training, metrics) never imports rclpy; the ROS 2
node lives in node.py and the modules it names. Start with `attn6d_ros.refiner.Refiner`.
"""

from pkgutil import extend_path

# The generated ROS interfaces (attn6d_ros.msg) may be installed in another directory than these sources (the
# development venv keeps them apart); extend_path lets the one package span both.
__path__ = extend_path(__path__, __name__)

__version__ = "0.1.0"
