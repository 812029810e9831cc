"""The ROS layer around the core: the node's helpers (messages, synchronization, TF, diagnostics, parameters,
a frame's jobs, tracking, overlay, markers) and the bag tool. Only this folder and node.py may import ROS."""
