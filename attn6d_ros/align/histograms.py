"""Colour model of the region-based alignment: foreground and background colour histograms learned from the
image itself along the correspondence lines, and every pixel's log likelihood under each (RBGT / SRT3D).

The histograms are global for the object (one for its colours, one for its surroundings), learned from the
pixels a short way inside and outside the projected contour of a pose. They never look at the mesh's
colours, so a colour cast or a badly textured mesh does not matter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ColourModel:
    """Log likelihoods of every quantised colour under the object's and the background's histogram.

    Attributes:
        bins: histogram bins per colour channel (bins**3 colours).
        log_foreground: (bins**3,) float64 log p(colour | object).
        log_background: (bins**3,) float64 log p(colour | background).
        foreground_pixels, background_pixels: how many pixels each histogram was learned from.
    """

    bins: int
    log_foreground: np.ndarray
    log_background: np.ndarray
    foreground_pixels: int
    background_pixels: int

    def log_ratio(self, codes: np.ndarray) -> np.ndarray:
        """log p(colour | object) - log p(colour | background) of colour codes (any shape); code -1 (no
        pixel, e.g. outside the image) gives 0."""
        ratio = self.log_foreground - self.log_background
        return np.where(codes >= 0, ratio[np.maximum(codes, 0)], 0.0)

    def blended(self, other: ColourModel | None, rate: float) -> ColourModel:
        """The histograms moved a share ``rate`` (0..1) towards ``other``'s (itself when None)."""
        if other is None or rate <= 0.0:
            return self
        if other.bins != self.bins:
            raise ValueError(f"cannot blend colour models of {self.bins} and {other.bins} bins")

        def mix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            return np.log((1.0 - rate) * np.exp(a) + rate * np.exp(b))

        return ColourModel(
            bins=self.bins,
            log_foreground=mix(self.log_foreground, other.log_foreground),
            log_background=mix(self.log_background, other.log_background),
            foreground_pixels=other.foreground_pixels,
            background_pixels=other.background_pixels,
        )


class CodeImage:
    """Quantised colour codes (0 .. bins**3 - 1) of an image's pixels, computed for the pixels asked for
    only (the lines touch a few ten thousand of an image's pixels).

    Args:
        image: (H, W, 3) uint8 RGB.
        bins: bins per colour channel, a power of two from 2 to 256.
    """

    def __init__(self, image: np.ndarray, bins: int) -> None:
        self.height, self.width = image.shape[:2]
        self.image_size = (self.width, self.height)
        self.bins = bins
        self._shift = 8 - int(np.log2(bins))
        self._bits = int(np.log2(bins))
        self._flat = np.ascontiguousarray(image).reshape(-1, 3)

    def sample(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Codes of the pixels nearest to image positions (u, v) (equal shapes), -1 outside the image."""
        col = np.rint(u).astype(np.int32)
        row = np.rint(v).astype(np.int32)
        inside = (col >= 0) & (col < self.width) & (row >= 0) & (row < self.height)
        rgb = (
            self._flat[np.where(inside, row * self.width + col, 0)] >> self._shift
        )  # (..., 3) uint8
        b = self._bits
        codes = (rgb[..., 0].astype(np.int32) << 2 * b) | (rgb[..., 1].astype(np.int32) << b)
        return np.where(inside, codes | rgb[..., 2], -1)


MIN_PIXELS = 20  # fewer pixels on either side of the contour: no colour model


def learn_colour_model(
    foreground_codes: np.ndarray, background_codes: np.ndarray, bins: int, uniform_share: float
) -> ColourModel | None:
    """Normalised histograms of the colour codes on either side of the contour (codes < 0 are ignored),
    each mixed with a uniform distribution of weight ``uniform_share`` (so that no colour is impossible);
    None when either side has fewer than MIN_PIXELS pixels."""
    fg = foreground_codes[foreground_codes >= 0]
    bg = background_codes[background_codes >= 0]
    if len(fg) < MIN_PIXELS or len(bg) < MIN_PIXELS:
        return None
    size = bins**3

    def log_histogram(codes: np.ndarray) -> np.ndarray:
        counts = np.bincount(codes, minlength=size) / len(codes)
        return np.log((1.0 - uniform_share) * counts + uniform_share / size)

    return ColourModel(
        bins=bins,
        log_foreground=log_histogram(fg),
        log_background=log_histogram(bg),
        foreground_pixels=len(fg),
        background_pixels=len(bg),
    )
