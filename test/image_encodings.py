"""sensor_msgs/Image messages in every encoding the node accepts, with row padding and either byte order, for
the tests that compare cv_bridge with our numpy decoder (attn6d_ros.ros.codec.ENCODINGS)."""

from __future__ import annotations

import numpy as np

from attn6d_ros.ros.codec import ENCODINGS


def encode(rgb16: np.ndarray, encoding: str, *, pad_bytes: int = 0, bigendian: bool = False):
    """An Image of `encoding` holding `rgb16` ((H, W, 3) uint16 RGB): 8-bit encodings take the high bytes,
    mono takes the green channel, alpha is a ramp; each row is followed by `pad_bytes` bytes of 0xAB."""
    from sensor_msgs.msg import Image

    channels, depth, order = ENCODINGS[encoding]
    values = rgb16 if depth == 2 else (rgb16 >> 8).astype(np.uint8)
    if order == "bgr":
        values = values[:, :, ::-1]
    if order == "mono":
        values = values[:, :, 1:2]
    if channels == 4:
        ramp = (np.arange(values.shape[1]) * 37 % (1 << (8 * depth))).astype(values.dtype)
        alpha = np.broadcast_to(ramp[None, :, None], (*values.shape[:2], 1))
        values = np.concatenate([values, alpha], axis=2)
    if depth == 2:
        values = values.astype(">u2" if bigendian else "<u2")
    height, width = values.shape[:2]
    rows = np.ascontiguousarray(values).view(np.uint8).reshape(height, width * channels * depth)
    padded = np.full((height, rows.shape[1] + pad_bytes), 0xAB, dtype=np.uint8)
    padded[:, : rows.shape[1]] = rows
    msg = Image()
    msg.height, msg.width = height, width
    msg.encoding = encoding
    msg.is_bigendian = int(bigendian and depth == 2)
    msg.step = int(padded.shape[1])
    msg.data = padded.tobytes()
    return msg


def random_rgb16(height: int, width: int, seed: int) -> np.ndarray:
    """(H, W, 3) uint16 over the whole range, including the values whose 8-bit rounding is a tie."""
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 65536, size=(height, width, 3), dtype=np.uint16)
    values.flat[:4] = (
        0,
        65535,
        128,
        257 * 100 + 128,
    )  # ends of the range and (v + 128) // 257 edges
    return values
