"""Real photographs from scikit-image's wheel, split once into a training set and a held-out test set.

Training backgrounds and occluders (synth.py) draw only from `TRAIN_PHOTOS`; the shifted test set
(shifted_scenes.py) draws only from `TEST_PHOTOS`, so no test photograph is ever trained on. The two
pictures of one scene (the stereo pair, the cat shipped twice) sit on the same side of the split.
"""

from __future__ import annotations

from functools import cache

import numpy as np

# Each name is a scikit-image `data` function; "motorcycle_left"/"_right" are the two views of
# `stereo_motorcycle`. Grey photographs are used as grey RGB.
TRAIN_PHOTOS: tuple[str, ...] = (
    "astronaut",
    "motorcycle_left",
    "motorcycle_right",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "grass",
    "coins",
    "moon",
    "page",
    "text",
    "cell",
)
TEST_PHOTOS: tuple[str, ...] = (
    "coffee",
    "rocket",
    "chelsea",
    "cat",
    "brick",
    "gravel",
    "clock",
    "camera",
)


@cache
def load_photo(name: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB photograph `name` (one of TRAIN_PHOTOS or TEST_PHOTOS), read-only.

    Raises:
        ValueError: an unknown name.
    """
    if name not in TRAIN_PHOTOS and name not in TEST_PHOTOS:
        raise ValueError(f"unknown photo {name!r}; known: {sorted(TRAIN_PHOTOS + TEST_PHOTOS)}")
    import skimage.data

    if name.startswith("motorcycle_"):
        left, right, _ = skimage.data.stereo_motorcycle()
        image = left if name == "motorcycle_left" else right
    else:
        image = getattr(skimage.data, name)()
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = np.clip(image * (255.0 if image.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    image = np.ascontiguousarray(image[:, :, :3])
    image.setflags(write=False)
    return image


def random_view(
    rng: np.random.Generator, photo: np.ndarray, width: int, height: int
) -> np.ndarray:
    """(height, width, 3) float32 0..255: a random crop of `photo` (scale 0.3-1 of its shorter side),
    randomly flipped or turned by quarter turns, resized bilinearly to the requested size."""
    from PIL import Image

    h, w = photo.shape[:2]
    side = rng.uniform(0.3, 1.0) * min(h, w)
    aspect = width / height
    crop_w, crop_h = min(w, side * aspect**0.5), min(h, side / aspect**0.5)
    x0 = rng.uniform(0, w - crop_w)
    y0 = rng.uniform(0, h - crop_h)
    image = Image.fromarray(photo).crop((x0, y0, x0 + crop_w, y0 + crop_h))
    turns = int(rng.integers(4))
    if turns:
        image = image.transpose([Image.ROTATE_90, Image.ROTATE_180, Image.ROTATE_270][turns - 1])
    if rng.uniform() < 0.5:
        image = image.transpose(Image.FLIP_LEFT_RIGHT)
    return np.asarray(image.resize((width, height), Image.BILINEAR), dtype=np.float32)
