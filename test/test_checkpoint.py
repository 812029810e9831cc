"""Checkpoints: round trip, float16 storage, and clear errors for wrong or damaged files."""

import pickle
from pathlib import Path

import pytest
import torch

from attn6d_ros.checkpoint import load_checkpoint, save_checkpoint
from attn6d_ros.network import ModelConfig, RefinerNet


def _net() -> RefinerNet:
    torch.manual_seed(0)
    net = RefinerNet(ModelConfig.lite(crop_size=64, shared_stages=True))
    for p in net.parameters():  # make every output depend on every weight
        torch.nn.init.normal_(p, std=0.02)
    return net.eval()


def _outputs(net: RefinerNet) -> torch.Tensor:
    torch.manual_seed(1)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        out = net(x, x.flip(2))
    return torch.cat([out.xy_px.flatten(), out.dz.flatten(), out.quat_xyzw.flatten()])


def test_roundtrip_keeps_config_weights_and_metadata(tmp_path: Path) -> None:
    net = _net()
    save_checkpoint(tmp_path / "c.pt", net, metadata={"objects": ["ape"]}, train_state={"step": 3})
    loaded, metadata, state = load_checkpoint(tmp_path / "c.pt")
    assert loaded.cfg == net.cfg and metadata == {"objects": ["ape"]} and state == {"step": 3}
    torch.testing.assert_close(_outputs(loaded), _outputs(net))


def test_half_storage_is_smaller_and_close(tmp_path: Path) -> None:
    net = _net()
    save_checkpoint(tmp_path / "f32.pt", net)
    save_checkpoint(tmp_path / "f16.pt", net, half=True)
    assert (tmp_path / "f16.pt").stat().st_size < 0.6 * (tmp_path / "f32.pt").stat().st_size
    loaded, _, _ = load_checkpoint(tmp_path / "f16.pt")
    assert next(loaded.parameters()).dtype == torch.float32
    torch.testing.assert_close(_outputs(loaded), _outputs(net), atol=2e-2, rtol=2e-2)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "none.pt")


def test_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.pt"
    path.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(ValueError, match="cannot read checkpoint"):
        load_checkpoint(path)


def test_foreign_torch_file(tmp_path: Path) -> None:
    torch.save({"model": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an attn6d_ros refiner checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


class _Evil:
    def __reduce__(self):
        return (print, ("unpickled!",))


def test_arbitrary_objects_are_never_unpickled(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    with path.open("wb") as f:
        pickle.dump({"format": "attn6d_ros.refiner", "x": _Evil()}, f)
    with pytest.raises(ValueError, match="cannot read checkpoint"):
        load_checkpoint(path)


def test_newer_format_version(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "c.pt", _net())
    payload = torch.load(tmp_path / "c.pt", weights_only=True)
    payload["format_version"] = 99
    torch.save(payload, tmp_path / "c.pt")
    with pytest.raises(ValueError, match="format version 99"):
        load_checkpoint(tmp_path / "c.pt")


def test_weights_that_do_not_fit_the_config(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "c.pt", _net())
    payload = torch.load(tmp_path / "c.pt", weights_only=True)
    payload["model_config"]["growth"] = 12
    torch.save(payload, tmp_path / "c.pt")
    with pytest.raises(ValueError, match="do not match its model config"):
        load_checkpoint(tmp_path / "c.pt")
