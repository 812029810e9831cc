"""Refiner checkpoints: one file with format version, model config, weights, metadata and training state.

Files load with ``torch.load(weights_only=True)``: only tensors and plain Python containers, never pickled
objects. Writes are atomic (temporary file, then rename), so an interrupted training run never leaves a
half-written checkpoint behind.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from attn6d_ros.network import ModelConfig, RefinerNet

FORMAT = "attn6d_ros.refiner"
FORMAT_VERSION = 1


def save_checkpoint(
    path: str | Path,
    net: RefinerNet,
    *,
    metadata: dict | None = None,
    train_state: dict | None = None,
    half: bool = False,
) -> None:
    """Writes a checkpoint.

    Args:
        path: output file.
        net: the network (its config is stored with it).
        metadata: plain data describing the weights (objects, samples seen, evaluation numbers...).
        train_state: what resuming needs (optimizer, step, RNG states); omitted from shipped weights.
        half: store floating-point weights as float16 (half the size; loading restores float32).
    """
    state = {
        k: (v.detach().half() if half and v.is_floating_point() else v.detach()).cpu()
        for k, v in net.state_dict().items()
    }
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_config": net.cfg.to_dict(),
        "state_dict": state,
        "metadata": metadata or {},
    }
    if train_state is not None:
        payload["train_state"] = train_state
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def read_checkpoint(path: str | Path) -> dict:
    """Reads and validates a checkpoint file; returns its payload dict (tensors on the CPU).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a checkpoint of this project, a newer format version, or a corrupt file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises pickle, zip and runtime errors for damaged files
        raise ValueError(f"cannot read checkpoint {path}: not a valid torch file ({exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(f"{path} is not an attn6d_ros refiner checkpoint (format {found!r})")
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(
            f"{path} has checkpoint format version {version!r}; this attn6d_ros reads up to "
            f"{FORMAT_VERSION} (upgrade attn6d_ros)"
        )
    for key in ("model_config", "state_dict"):
        if key not in payload:
            raise ValueError(f"{path} is missing {key!r}")
    return payload


def load_checkpoint(path: str | Path) -> tuple[RefinerNet, dict, dict | None]:
    """Builds the network stored in a checkpoint.

    Returns:
        (net on the CPU in eval mode with float32 weights, metadata, train_state or None).

    Raises:
        FileNotFoundError, ValueError: see `read_checkpoint`; also when the weights do not fit the config.
    """
    payload = read_checkpoint(path)
    try:
        cfg = ModelConfig.from_dict(payload["model_config"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path} has an invalid model config: {exc}") from exc
    net = RefinerNet(cfg)
    state = {
        k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()
    }
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{path}: weights do not match its model config: {exc}") from exc
    return net.eval(), payload.get("metadata", {}), payload.get("train_state")
