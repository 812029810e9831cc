"""The multi-stage spatial-attention refiner network (Stevšić & Hilliges, 3DV 2020), pose update, losses.

Read top-down: config, building blocks (dense layers and blocks), the U-DenseNet backbone, the attention
heads, one stage, the multi-stage network, then the pose update and the losses. Paper facts are cited as
paper_facts.md §N; choices where the paper is silent (NOT FOUND there) are marked "ours".

Shapes: B batch, S crop side (152), G = S / 4 feature grid side (38).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from attn6d_ros.config_from_dict import dataclass_from_dict

# The paper's depth output is divided by 3000 before exp() (§2.5): a raw 300 scales the depth by e^0.1.
DEPTH_OUTPUT_DIVISOR = 3000.0


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of one refiner; stored inside every checkpoint.

    The defaults are the paper's network (§2.3-2.6); `ModelConfig.lite()` is our smaller CPU variant.
    """

    crop_size: int = 152  # input side, pixels (paper); must be divisible by 4
    stem_channels: int = 48  # first 3x3 conv (paper)
    growth: int = 16  # channels added per dense layer (paper)
    down_layers: tuple[int, ...] = (4, 5, 7)  # dense blocks at S, S/2, S/4 (paper)
    encoder_layers: tuple[int, ...] = (10, 12)  # dense blocks at S/8, S/16 (paper)
    bottleneck_layers: int = 15  # new-features-only dense block at S/32 (paper)
    decoder_layers: tuple[int, ...] = (12, 10, 7)  # up-path blocks at S/16, S/8, S/4 (paper)
    head_channels: int = 256  # attention / feature branch width (paper)
    pooling: Literal["attention", "average"] = (
        "attention"  # "average": the ablation (same parameters)
    )
    num_stages: int = 4  # refinement stages (paper)
    shared_stages: bool = (
        False  # one network applied at every stage, DeepIM-style (ours, for cheap training)
    )
    xy_output_scale: float = (
        10.0  # crop pixels per unit of the raw xy output (ours; see PoseHeadOutputs)
    )
    z_output_scale: float = 300.0  # paper depth units (1/3000) per unit of the raw z output (ours)
    # Ours, a training aid (DeepIM's auxiliary flow): a 1x1 conv reads the image motion between render and
    # image off every grid cell, so the backbone learns local correspondence, which rotation needs. Used by
    # the training loss only; inference never runs it.
    flow_head: bool = False
    # Ours: the depth head also pools its features weighted by each cell's position relative to the crop
    # centre, so a linear readout can form the outward motion of the object's outline, i.e. its change of
    # scale (a plain weighted mean cancels left- against right-edge motion). See AttentionHead.
    depth_moments: bool = False
    # Ours, for robustness to the camera: "per_crop" standardises each channel of the image crop on its own
    # (zero mean, spread 0.25, like a fixed-scaled crop) before the backbone, so a white-balance cast, an
    # exposure or contrast change of the whole crop does not reach the network; "fixed" is the paper's
    # pixel / 255 - 0.5 only. The render is always fixed-scaled: its colours are the mesh's.
    image_norm: Literal["fixed", "per_crop"] = "fixed"

    def __post_init__(self) -> None:
        if self.crop_size % 4 or self.crop_size < 32:
            raise ValueError(
                f"ModelConfig.crop_size must be a multiple of 4 and >= 32, got {self.crop_size}"
            )
        if (
            len(self.down_layers) != 3
            or len(self.encoder_layers) != 2
            or len(self.decoder_layers) != 3
        ):
            raise ValueError(
                "ModelConfig needs 3 down_layers, 2 encoder_layers and 3 decoder_layers, got "
                f"{self.down_layers}, {self.encoder_layers}, {self.decoder_layers}"
            )
        if (
            min(
                *self.down_layers,
                *self.encoder_layers,
                *self.decoder_layers,
                self.bottleneck_layers,
            )
            < 1
        ):
            raise ValueError("ModelConfig dense blocks need at least one layer each")
        if self.pooling not in ("attention", "average"):
            raise ValueError(
                f"ModelConfig.pooling must be 'attention' or 'average', got {self.pooling!r}"
            )
        if self.num_stages < 1:
            raise ValueError(f"ModelConfig.num_stages must be >= 1, got {self.num_stages}")
        if self.image_norm not in ("fixed", "per_crop"):
            raise ValueError(
                f"ModelConfig.image_norm must be 'fixed' or 'per_crop', got {self.image_norm!r}"
            )
        # Grid sizes through the encoder: S/4 must survive three more 2x poolings (e.g. 38 -> 19 -> 9 -> 4).
        if self.grid_size // 8 < 1:
            raise ValueError(
                f"ModelConfig.crop_size {self.crop_size} is too small for the encoder"
            )

    @property
    def grid_size(self) -> int:
        """Side of the attention grid, cells (S / 4; 38 for the paper)."""
        return self.crop_size // 4

    @staticmethod
    def full(**overrides: object) -> ModelConfig:
        """The paper's network: about 9.08 M parameters per stage."""
        return replace(ModelConfig(), **overrides)

    @staticmethod
    def lite(**overrides: object) -> ModelConfig:
        """Ours for CPUs: growth 8 and about half the layers (about 0.7 M parameters per stage)."""
        base = ModelConfig(
            stem_channels=24,
            growth=8,
            down_layers=(2, 3, 4),
            encoder_layers=(5, 6),
            bottleneck_layers=8,
            decoder_layers=(6, 5, 4),
            head_channels=128,
        )
        return replace(base, **overrides)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @staticmethod
    def from_dict(values: dict) -> ModelConfig:
        """Builds a config from a dict (a checkpoint or YAML); unknown keys are an error."""
        return dataclass_from_dict(ModelConfig, values, "ModelConfig")


# ----------------------------------------------------------------------------------------------------------
# Building blocks (§2.3): BN -> ReLU -> 3x3 conv, growth channels, concatenated with the input.


def _batch_norm(channels: int) -> nn.BatchNorm2d:
    # eps as Keras (§3). Momentum is ours: Keras' 0.99 (PyTorch 0.01) makes the running statistics trail
    # the weights by ~100 steps, and an overfit test showed eval mode lagging far behind train mode; we
    # use PyTorch's default 0.1.
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.1)


class DenseLayer(nn.Module):
    def __init__(self, in_channels: int, growth: int) -> None:
        super().__init__()
        self.norm = _batch_norm(in_channels)
        self.conv = nn.Conv2d(in_channels, growth, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.relu(self.norm(x)))


class DenseBlock(nn.Module):
    """`layers` dense layers. Returns input + new features, or only the new ones (`new_only`, the paper's
    "FC" blocks in the bottleneck and decoder)."""

    def __init__(
        self, in_channels: int, growth: int, layers: int, *, new_only: bool = False
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            DenseLayer(in_channels + i * growth, growth) for i in range(layers)
        )
        self.new_only = new_only
        self.out_channels = layers * growth if new_only else in_channels + layers * growth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.layers:
            features.append(layer(torch.cat(features, dim=1)))
        return torch.cat(features[1:] if self.new_only else features, dim=1)


class UDenseNet(nn.Module):
    """The paper's U-shaped DenseNet (§2.3): (B, 6, S, S) -> (B, C, S/4, S/4), C = 576 for the paper.

    Max-pool transitions without convs, transposed-conv up-sampling ("valid", "valid", "same"), skips only at
    S/4, S/8 and S/16.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        g = cfg.growth
        self.stem = nn.Conv2d(6, cfg.stem_channels, 3, padding=1)
        c = cfg.stem_channels
        self.down = nn.ModuleList()
        for layers in cfg.down_layers:  # S, S/2, S/4 (pooling between them)
            block = DenseBlock(c, g, layers)
            self.down.append(block)
            c = block.out_channels
        skip0 = c  # E0 at S/4
        self.enc1 = DenseBlock(c, g, cfg.encoder_layers[0])
        skip1 = self.enc1.out_channels  # E1 at S/8
        self.enc2 = DenseBlock(skip1, g, cfg.encoder_layers[1])
        skip2 = self.enc2.out_channels  # E2 at S/16
        self.bottleneck = DenseBlock(skip2, g, cfg.bottleneck_layers, new_only=True)
        c = self.bottleneck.out_channels
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for skip, layers in zip((skip2, skip1, skip0), cfg.decoder_layers, strict=True):
            self.up.append(nn.ConvTranspose2d(c, c, 3, stride=2))
            block = DenseBlock(c + skip, g, layers, new_only=True)
            self.dec.append(block)
            c = block.out_channels
        self.out_channels = c + skip0 + self.up[-1].out_channels  # last block's output + its input
        self._init_weights()

    def _init_weights(self) -> None:
        # §2.3: encoder convs N(0, 1/C_in), decoder/bottleneck convs He-normal, zero biases.
        for name, module in self.named_modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                if name.startswith(("bottleneck", "dec", "up")):
                    nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                else:
                    nn.init.normal_(module.weight, std=math.sqrt(1.0 / module.in_channels))
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for i, block in enumerate(self.down):
            if i:
                x = F.max_pool2d(x, 2)
            x = block(x)
        skip0 = x  # (B, 304, G, G)
        skip1 = self.enc1(F.max_pool2d(skip0, 2))  # (B, 464, G/2, G/2)
        skip2 = self.enc2(F.max_pool2d(skip1, 2))  # (B, 656, G/4, G/4)
        x = self.bottleneck(F.max_pool2d(skip2, 2))  # (B, 240, G/8, G/8)
        for up, dec, skip in zip(self.up, self.dec, (skip2, skip1, skip0), strict=True):
            # Transposed 3x3/2 gives 2n + 1 (4 -> 9, 9 -> 19); crop to the skip's size, which also realises
            # the paper's "same" padding on the last step (19 -> 38).
            x = up(x)[:, :, : skip.shape[2], : skip.shape[3]]
            merged = torch.cat([x, skip], dim=1)
            x = dec(merged)
        return torch.cat(
            [x, merged], dim=1
        )  # (B, 576, G, G): last block's new features + its input


# ----------------------------------------------------------------------------------------------------------
# Attention heads (§2.4): per head, a softmax map over all G x G cells pools a 256-channel feature map.


@dataclass
class PoseHeadOutputs:
    """Raw outputs of one stage, before the pose update.

    xy_px: (B, 2) image-plane shift of the object centre, crop pixels (paper's Δu, Δv).
    dz: (B,) depth output in the paper's units: the translation is scaled by exp(dz / 3000).
    quat_xyzw: (B, 4) unnormalised rotation (paper's q̃), applied in the camera frame.
    attention: (B, 3, G, G) the xy, z and rotation maps; each sums to 1.
    flow_px: (B, 2, G, G) image motion of the rendered object per grid cell, crop pixels; only in training
        mode with `ModelConfig.flow_head`, else None.
    """

    xy_px: torch.Tensor
    dz: torch.Tensor
    quat_xyzw: torch.Tensor
    attention: torch.Tensor
    flow_px: torch.Tensor | None = None


class AttentionHead(nn.Module):
    """Attention pooling of a feature branch over the grid, then two linear layers (§2.4).

    With `moments` (ours, `ModelConfig.depth_moments`) the head also pools the features times each cell's
    offset from the crop centre (x and y, -1 at the left/top border to 1 at the right/bottom) and adds a
    linear readout of those moments, zero-initialised so that it starts as the paper's head.
    """

    def __init__(
        self, in_channels: int, width: int, out_features: int, pooling: str, moments: bool = False
    ) -> None:
        super().__init__()
        self.attention = nn.Sequential(
            nn.Conv2d(in_channels, width, 1),
            _batch_norm(width),
            nn.ReLU(),
            nn.Conv2d(width, 1, 1),
        )
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 1),
            _batch_norm(width),
            nn.ReLU(),
        )
        # Two linear layers with no activation between them (§2.4).
        self.regressor = nn.Sequential(nn.Linear(width, width), nn.Linear(width, out_features))
        self.pooling = pooling
        self.moment_regressor = nn.Linear(2 * width, out_features) if moments else None
        if self.moment_regressor is not None:
            nn.init.zeros_(self.moment_regressor.weight)
            nn.init.zeros_(self.moment_regressor.bias)
        nn.init.normal_(self.attention[0].weight, std=1.0 / in_channels)
        nn.init.normal_(self.attention[3].weight, std=1.0 / width)
        nn.init.normal_(self.features[0].weight, std=1.0 / in_channels)
        # Ours: the last layer starts at zero, so an untrained stage is the identity update.
        nn.init.zeros_(self.regressor[1].weight)
        nn.init.zeros_(self.regressor[1].bias)

    def forward(
        self, x: torch.Tensor, attention_input: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        values = self.features(x).flatten(2)  # (B, 256, G*G)
        if self.pooling == "attention":
            logits = self.attention(attention_input).flatten(1)  # (B, G*G)
            weights = torch.softmax(logits.float(), dim=1).to(values.dtype)
        else:
            # Ablation: uniform weights. The attention branch is kept (unused) so both variants have the
            # same parameters; only the pooling differs.
            weights = values.new_full((values.shape[0], values.shape[2]), 1.0 / values.shape[2])
        pooled = torch.einsum("bn,bcn->bc", weights, values)  # (B, 256)
        out = self.regressor(pooled)
        if self.moment_regressor is not None:
            offsets = _cell_offsets(x.shape[-1], values.dtype, values.device)  # (2, G*G)
            moments = torch.einsum("bn,bcn,dn->bcd", weights, values, offsets)  # (B, 256, 2)
            out = out + self.moment_regressor(moments.flatten(1))
        return out, weights


def _cell_offsets(grid: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(2, grid²) x and y offsets of the cell centres from the crop centre, in half crop sides ([-1, 1])."""
    centres = (torch.arange(grid, device=device, dtype=dtype) + 0.5) / grid * 2 - 1
    y, x = torch.meshgrid(centres, centres, indexing="ij")
    return torch.stack([x.flatten(), y.flatten()])


class StageNet(nn.Module):
    """One stage: backbone + three attention heads (xy: 2, z: 1, rotation: 4 outputs)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = UDenseNet(cfg)
        c = self.backbone.out_channels
        self.feature_norm = _batch_norm(c)  # BN_f
        self.attention_norm = _batch_norm(c)  # BN_a, shared by the 3 heads
        self.heads = nn.ModuleList(
            AttentionHead(
                c, cfg.head_channels, n, cfg.pooling, moments=(n == 1 and cfg.depth_moments)
            )
            for n in (2, 1, 4)
        )
        self.flow_head = nn.Conv2d(c, 2, 1) if cfg.flow_head else None
        if self.flow_head is not None:  # starts at "no motion", like the pose outputs
            nn.init.zeros_(self.flow_head.weight)
            nn.init.zeros_(self.flow_head.bias)

    def forward(self, image: torch.Tensor, render: torch.Tensor) -> PoseHeadOutputs:
        """image, render: (B, 3, S, S), each scaled to about [-0.5, 0.5] (see `normalize_crop`)."""
        if self.cfg.image_norm == "per_crop":
            image = standardize_per_crop(image)
        features = self.backbone(torch.cat([image, render], dim=1))
        x = F.relu(self.feature_norm(features))
        a = F.relu(self.attention_norm(features))
        outputs, maps = zip(*(head(x, a) for head in self.heads), strict=True)
        xy, z, q = outputs
        g = self.cfg.grid_size
        identity = q.new_tensor([0.0, 0.0, 0.0, 1.0])
        flow = None
        if self.flow_head is not None and self.training:
            flow = self.flow_head(x) * self.cfg.xy_output_scale
        return PoseHeadOutputs(
            xy_px=xy * self.cfg.xy_output_scale,
            dz=z[:, 0] * self.cfg.z_output_scale,
            quat_xyzw=q + identity,
            attention=torch.stack(maps, dim=1).view(-1, 3, g, g),
            flow_px=flow,
        )


class RefinerNet(nn.Module):
    """`num_stages` stages with separate weights (paper), or one shared stage (`shared_stages`)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        count = 1 if cfg.shared_stages else cfg.num_stages
        self.stages = nn.ModuleList(StageNet(cfg) for _ in range(count))

    def forward(
        self, image: torch.Tensor, render: torch.Tensor, stage: int = 0
    ) -> PoseHeadOutputs:
        """Runs stage `stage` (see StageNet.forward)."""
        return self.stage(stage)(image, render)

    def stage(self, index: int) -> StageNet:
        """The network of stage `index` (0-based); a shared network serves any number of stages."""
        if self.cfg.shared_stages:
            return self.stages[0]
        if not 0 <= index < len(self.stages):
            raise ValueError(f"stage index {index} outside the model's {len(self.stages)} stages")
        return self.stages[index]


# Smallest spread a channel is divided by (about 8 grey levels): a flat crop is not blown up into noise.
MIN_CROP_STD = 0.03


def standardize_per_crop(image: torch.Tensor) -> torch.Tensor:
    """(B, 3, S, S) -> the same with every channel of every crop at mean 0 and standard deviation 0.25
    (ModelConfig.image_norm "per_crop"); spreads below MIN_CROP_STD are not amplified further."""
    mean = image.mean(dim=(2, 3), keepdim=True)
    std = image.std(dim=(2, 3), keepdim=True).clamp_min(MIN_CROP_STD)
    return (image - mean) * (0.25 / std)


def normalize_crop(rgb_u8: torch.Tensor) -> torch.Tensor:
    """(B, S, S, 3) uint8 or float 0..255 -> (B, 3, S, S) float32 in [-0.5, 0.5] (§2.1: pixel/256 - 0.5;
    we divide by 255 for both image and render)."""
    return rgb_u8.permute(0, 3, 1, 2).float() / 255.0 - 0.5


# ----------------------------------------------------------------------------------------------------------
# Pose update (§2.5), batched and differentiable. Poses: R (B, 3, 3), t (B, 3) metres, camera frame.


def quat_xyzw_to_matrix_torch(q: torch.Tensor) -> torch.Tensor:
    """(B, 4) quaternions (x, y, z, w), normalised here, to (B, 3, 3) rotation matrices."""
    q = q / q.norm(dim=1, keepdim=True).clamp_min(1e-12)
    x, y, z, w = q.unbind(1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
            2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
            2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
        ],
        dim=1,
    ).view(-1, 3, 3)  # fmt: skip


def apply_update(
    R: torch.Tensor,
    t: torch.Tensor,
    K: torch.Tensor,
    zoom: torch.Tensor,
    xy_px: torch.Tensor,
    dz: torch.Tensor,
    quat_xyzw: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's update (§2.5).

    1. Shift the projected object origin by the predicted crop-pixel offset divided by the crop zoom.
    2. Back-project the shifted point at the old depth.
    3. Scale the whole translation by exp(dz / 3000): the object moves along its viewing ray.
    4. Left-multiply the normalised predicted rotation (camera frame).

    Args:
        R: (B, 3, 3) current rotations; t: (B, 3) current translations, metres.
        K: (B, 3, 3) full-image intrinsics; zoom: (B,) crop pixels per image pixel of the *initial* window.
        xy_px, dz, quat_xyzw: the stage's outputs (see PoseHeadOutputs).
    """
    fx, fy, cx, cy = K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2]
    z = t[:, 2]
    u = fx * t[:, 0] / z + cx + xy_px[:, 0] / zoom
    v = fy * t[:, 1] / z + cy + xy_px[:, 1] / zoom
    t_lateral = torch.stack([(u - cx) / fx * z, (v - cy) / fy * z, z], dim=1)
    t_new = t_lateral * torch.exp(dz / DEPTH_OUTPUT_DIVISOR)[:, None]
    R_new = quat_xyzw_to_matrix_torch(quat_xyzw) @ R
    return R_new, t_new


def update_targets(
    R: torch.Tensor,
    t: torch.Tensor,
    R_gt: torch.Tensor,
    t_gt: torch.Tensor,
    K: torch.Tensor,
    zoom: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The outputs for which `apply_update` lands exactly on the ground truth (ours, for direct supervision).

    Returns xy_px (B, 2) crop pixels, dz (B,) paper units, and the rotation residual R_gt R^T as a
    rotation vector (B, 3), radians, camera frame.
    """
    fx, fy = K[:, 0, 0], K[:, 1, 1]
    du = fx * (t_gt[:, 0] / t_gt[:, 2] - t[:, 0] / t[:, 2])
    dv = fy * (t_gt[:, 1] / t_gt[:, 2] - t[:, 1] / t[:, 2])
    xy_px = torch.stack([du, dv], dim=1) * zoom[:, None]
    dz = DEPTH_OUTPUT_DIVISOR * torch.log(t_gt[:, 2] / t[:, 2])
    return xy_px, dz, matrix_to_rotvec_torch(R_gt @ R.transpose(1, 2))


def matrix_to_rotvec_torch(R: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3) rotations to (B, 3) rotation vectors; accurate for angles below about 170 degrees."""
    cos = ((R.diagonal(dim1=1, dim2=2).sum(1) - 1) / 2).clamp(-1 + 1e-7, 1 - 1e-7)
    angle = torch.acos(cos)
    axis = torch.stack(
        [R[:, 2, 1] - R[:, 1, 2], R[:, 0, 2] - R[:, 2, 0], R[:, 1, 0] - R[:, 0, 1]], 1
    )
    scale = torch.where(angle < 1e-4, 0.5 + angle**2 / 12, angle / (2 * torch.sin(angle)))
    return axis * scale[:, None]


def rotvec_to_quat_xyzw_torch(rotvec: torch.Tensor) -> torch.Tensor:
    """(B, 3) rotation vectors to (B, 4) unit quaternions (x, y, z, w)."""
    angle = rotvec.norm(dim=1, keepdim=True)
    scale = torch.where(
        angle < 1e-6, 0.5 - angle**2 / 48, torch.sin(angle / 2) / angle.clamp_min(1e-12)
    )
    return torch.cat([rotvec * scale, torch.cos(angle / 2)], dim=1)


# ----------------------------------------------------------------------------------------------------------
# Losses


def point_matching_loss(
    R: torch.Tensor,
    t: torch.Tensor,
    R_gt: torch.Tensor,
    t_gt: torch.Tensor,
    points: torch.Tensor,
    symmetric: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean squared distance between model points under the two poses, per sample (B,), metres².

    The paper's loss (§3) is 0.25 x this in mm², averaged over stages; for symmetric objects we use the
    closest-point (ADD-S) variant, which the paper did not. points: (B, P, 3) or (P, 3); symmetric: (B,) bool.
    """
    if points.dim() == 2:
        points = points.expand(R.shape[0], -1, -1)
    p_est = points @ R.transpose(1, 2) + t[:, None]
    p_gt = points @ R_gt.transpose(1, 2) + t_gt[:, None]
    loss = ((p_est - p_gt) ** 2).sum(-1).mean(-1)
    if symmetric is not None and bool(symmetric.any()):
        closest = torch.cdist(p_gt[symmetric], p_est[symmetric]).min(dim=2).values  # (b, P)
        loss = loss.clone()
        loss[symmetric] = (closest**2).mean(-1)
    return loss


@dataclass(frozen=True)
class DirectLossScales:
    """Normalisation of the direct (disentangled) supervision, ours: under DeepIM noise (1/1/5 cm, 15° per
    axis) the normalised targets are about 1 for each term, so the three terms pull equally. (Scales of
    10 px and 200 depth units left the image-shift and depth terms at 0.03-0.05 against 0.3 for rotation
    at 96 px, and those two stopped learning.)"""

    xy_px: float = 3.0  # crop pixels (at 96 px; `for_crop` scales it with the crop size)
    dz: float = 100.0  # paper depth units (1/3000): about 3.3 % of the depth
    rotation: float = 0.2  # radians (about 11 degrees)
    # Smooth-L1's quadratic zone, in normalised units. With 1, every error below one scale (3 px, 3.3 % of
    # the depth, 11 degrees) gets a gradient that shrinks with it, so the last per cent of depth, the
    # precision ADD 0.1 d needs, is barely trained; a small beta keeps the gradient's size down to beta.
    beta: float = 1.0

    @classmethod
    def for_crop(cls, crop_size: int, beta: float = 1.0) -> DirectLossScales:
        """The defaults with the image-shift scale grown in proportion to the crop side (pixels)."""
        return cls(xy_px=cls.xy_px * crop_size / 96, beta=beta)


def flow_loss(
    flow_px: torch.Tensor, flow_target_px: torch.Tensor, scale_px: float
) -> torch.Tensor:
    """Smooth-L1 between the predicted grid flow and the rendered object's true image motion, per sample (B,).

    flow_px: (B, 2, G, G) network output; flow_target_px: (B, S, S, 2) per-pixel motion of the rendered
    object (synth.py's "flow"), NaN off the object. The target is averaged over each cell's object pixels;
    cells with no object pixel are left out. Normalised by `scale_px` like the image-shift term.
    """
    g = flow_px.shape[-1]
    target = flow_target_px.permute(0, 3, 1, 2)
    on_object = torch.isfinite(target).all(dim=1, keepdim=True)
    target = torch.where(on_object, target, torch.zeros_like(target))
    on_object = on_object.to(target.dtype)
    cover = F.adaptive_avg_pool2d(on_object, g)  # (B, 1, G, G) share of object pixels per cell
    mean_target = F.adaptive_avg_pool2d(target, g) / cover.clamp_min(1e-6)
    cell = (cover > 0).to(target.dtype)
    err = F.smooth_l1_loss(flow_px / scale_px, mean_target / scale_px, reduction="none").sum(1)
    return (err * cell[:, 0]).flatten(1).sum(1) / cell.flatten(1).sum(1).clamp_min(1.0)


def unit_quat_xyzw_torch(q: torch.Tensor) -> torch.Tensor:
    """(B, 4) quaternions (x, y, z, w) to unit quaternions with w >= 0 (one sign per rotation)."""
    q = q / q.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return torch.where(q[:, 3:4] < 0, -q, q)


def direct_update_loss(
    out: PoseHeadOutputs,
    xy_target: torch.Tensor,
    dz_target: torch.Tensor,
    rotvec_target: torch.Tensor,
    scales: DirectLossScales,
    symmetric: torch.Tensor | None = None,
) -> torch.Tensor:
    """Smooth-L1 on normalised update outputs against the exact targets (`update_targets`).

    Returns (B, 3): the image-shift, depth and rotation terms per sample (sum them for the loss).

    Ours, for learnability (training_notes.md: a point loss alone did not start learning on a CPU budget).
    The rotation term compares the quaternions' vector parts (about half the rotation vector); it is
    skipped for symmetric objects, whose target rotation is ambiguous (their point loss is symmetry-aware).
    """
    beta = scales.beta
    xy = F.smooth_l1_loss(
        out.xy_px / scales.xy_px, xy_target / scales.xy_px, reduction="none", beta=beta
    ).sum(1)
    z = F.smooth_l1_loss(out.dz / scales.dz, dz_target / scales.dz, reduction="none", beta=beta)
    # Rotation: vector parts of the unit quaternions (sin(angle / 2) x axis), sign fixed to w >= 0.
    q = unit_quat_xyzw_torch(out.quat_xyzw)
    q_target = rotvec_to_quat_xyzw_torch(rotvec_target)
    half = scales.rotation / 2
    rot = F.smooth_l1_loss(
        q[:, :3] / half, q_target[:, :3] / half, reduction="none", beta=beta
    ).sum(1)
    if symmetric is not None:
        rot = torch.where(symmetric, torch.zeros_like(rot), rot)
    return torch.stack([xy, z, rot], dim=1)
