"""Training samples stacked for the network: TrainingBatch and collate_samples (the DataLoader's collate_fn).

The one place where synthetic samples (synth.TrainingSample, numpy) become tensors: train.py's DataLoader, the
tests and tools/probe.py all batch through `collate_samples`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from attn6d_ros.crop import CropWindow
from attn6d_ros.synth import TrainingSample


@dataclass
class TrainingBatch:
    """B training samples as tensors (see synth.TrainingSample for what each field means).

    Attributes:
        image, render: (B, S, S, 3) uint8.
        flow: (B, S, S, 2) float32, crop pixels; NaN off the object.
        T_gt, T_init, T_cur: (B, 4, 4) float32 poses, metres.
        K: (B, 3, 3) float32 intrinsics of the camera images.
        zoom: (B,) float32 crop pixels per image pixel of each crop window.
        object_index: (B,) int64.
        occlusion: (B,) float64, [0, 1].
        windows: the B crop windows (of T_init), camera image pixels.
    """

    image: torch.Tensor
    render: torch.Tensor
    flow: torch.Tensor
    T_gt: torch.Tensor
    T_init: torch.Tensor
    T_cur: torch.Tensor
    K: torch.Tensor
    zoom: torch.Tensor
    object_index: torch.Tensor
    occlusion: torch.Tensor
    windows: list[CropWindow]

    def __len__(self) -> int:
        return len(self.windows)

    def to(self, device: torch.device, non_blocking: bool = False) -> TrainingBatch:
        """The same batch with every tensor on `device`."""
        return self._map(lambda x: x.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> TrainingBatch:
        """The same batch in page-locked memory (the DataLoader calls this with pin_memory=True)."""
        return self._map(lambda x: x.pin_memory())

    def _map(self, fn) -> TrainingBatch:
        tensors = {
            f.name: fn(getattr(self, f.name))
            for f in dataclasses.fields(self)
            if isinstance(getattr(self, f.name), torch.Tensor)
        }
        return dataclasses.replace(self, **tensors)


def collate_samples(samples: Sequence[TrainingSample]) -> TrainingBatch:
    """Stacks training samples into a batch; poses, intrinsics and zoom become float32 (the network's type).

    Raises:
        ValueError: no samples.
    """
    if not samples:
        raise ValueError("collate_samples needs at least one sample, got none")

    def stack(name: str) -> torch.Tensor:
        return torch.from_numpy(np.stack([getattr(s, name) for s in samples]))

    windows = [s.window for s in samples]
    return TrainingBatch(
        image=stack("image"),
        render=stack("render"),
        flow=stack("flow"),
        T_gt=stack("T_gt").float(),
        T_init=stack("T_init").float(),
        T_cur=stack("T_cur").float(),
        K=stack("K").float(),
        zoom=torch.tensor([w.zoom for w in windows], dtype=torch.float32),
        object_index=torch.tensor([s.object_index for s in samples], dtype=torch.int64),
        occlusion=torch.tensor([s.occlusion for s in samples], dtype=torch.float64),
        windows=windows,
    )
