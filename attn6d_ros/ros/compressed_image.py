"""sensor_msgs/CompressedImage (image_transport's ``compressed`` format: JPEG or PNG) to RGB, with Pillow.

image_transport's compressed plugin writes ``format`` as ``"<encoding>; jpeg compressed <encoding>"`` (or
``png``), older drivers just ``"jpeg"`` or ``"png"``. The file inside is an ordinary JPEG or PNG whose colours
are right whatever the original encoding (the plugin converts rgb8 to bgr8 before OpenCV encodes it), so it
decodes to RGB without a channel swap. Depth images (``compressedDepth``) and other codecs are refused.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

COMPRESSED_FORMATS = (
    "jpeg",
    "png",
)  # what `format` may name (also "jpg"); empty: detect from the data


def compressed_to_rgb(msg: Any) -> np.ndarray:
    """Decodes a sensor_msgs/CompressedImage into (H, W, 3) uint8 RGB.

    Grey images are replicated to three channels, alpha is dropped, 16-bit PNGs are scaled to 8 bits
    (v / 257, rounded, as codec.image_to_rgb does).

    Raises:
        ValueError: empty data, a format other than JPEG or PNG (named with its value), or data that does
            not decode (names the format and the size).
    """
    from PIL import Image, UnidentifiedImageError

    fmt = str(msg.format)
    lowered = fmt.lower()
    if "compresseddepth" in lowered:
        raise ValueError(
            f"compressed_image.format {fmt!r} is a compressedDepth image; expected a colour image "
            f"({' or '.join(COMPRESSED_FORMATS)})"
        )
    # "<encoding>; jpeg compressed <encoding>" (image_transport) or plain "jpeg" / "png".
    codec = lowered.split(";", 1)[-1].split()[0] if lowered.strip(" ;") else ""
    if lowered and codec not in ("jpeg", "jpg", "png"):
        raise ValueError(
            f"compressed_image.format {fmt!r} is not supported; expected one of "
            f"{list(COMPRESSED_FORMATS)} (image_transport's 'compressed' plugin)"
        )
    data = bytes(msg.data)
    if not data:
        raise ValueError(f"compressed_image.data is empty (format {fmt!r})")
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format not in ("JPEG", "PNG"):
                raise ValueError(
                    f"compressed_image.data is a {image.format} file (format {fmt!r}); expected JPEG or PNG"
                )
            return _to_rgb(image)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(
            f"compressed_image.data ({len(data)} bytes, format {fmt!r}) cannot be decoded: {exc}"
        ) from exc


def _to_rgb(image: Any) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        values = np.asarray(image, dtype=np.uint32)
        grey = ((values + 128) // 257).clip(0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))
    return np.array(image.convert("RGB"), dtype=np.uint8, order="C", copy=True)


def rgb_to_compressed_data(rgb_u8: np.ndarray, codec: str = "jpeg", quality: int = 95) -> bytes:
    """(H, W, 3) uint8 RGB -> JPEG or PNG bytes, as image_transport's compressed plugin sends them."""
    from PIL import Image

    if codec not in COMPRESSED_FORMATS:
        raise ValueError(f"codec must be one of {list(COMPRESSED_FORMATS)}, got {codec!r}")
    buffer = io.BytesIO()
    image = Image.fromarray(np.ascontiguousarray(rgb_u8, dtype=np.uint8))
    if codec == "jpeg":
        image.save(buffer, format="JPEG", quality=quality)
    else:
        image.save(buffer, format="PNG")
    return buffer.getvalue()
