"""Training: a tiny run writes checkpoints and a learning curve, resumes, and a lite refiner can overfit."""

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO

from attn6d_ros.checkpoint import load_checkpoint
from attn6d_ros.mesh import load_mesh
from attn6d_ros.network import ModelConfig, RefinerNet, apply_update, normalize_crop
from attn6d_ros.synth import SceneGenerator, SynthConfig
from attn6d_ros.train import TrainConfig, TrainingStep, get_lr, load_train_config, main
from attn6d_ros.training_batch import TrainingBatch, collate_samples


@pytest.mark.slow
def test_tiny_run_writes_checkpoints_history_and_resumes(tmp_path: Path) -> None:
    # CI's proof that `make train-demo` works: the same config, a few steps, workers included.
    out = tmp_path / "run"
    overrides = [
        f"out_dir={out}",
        "total_samples=32",
        "batch_size=8",
        "val_every_samples=16",
        "val_scenes=2",
        "log_every_steps=1",
        "model_overrides={crop_size: 64, shared_stages: true}",
    ]
    assert main(["--config", str(REPO / "config" / "train_demo.yaml"), "--set", *overrides]) == 0
    rows = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in rows].count("val") == 2 and rows[0]["kind"] == "train"
    _, metadata, state = load_checkpoint(out / "last.pt")
    assert state["samples"] == 32 and state["step"] == 4 and "demo_object" in metadata["objects"]
    assert load_checkpoint(out / "best.pt")[2] is None  # shipped-style: no training state
    # Resume: the counters continue from last.pt; stop_after_samples ends a piece early on the same
    # schedule (the learning rate of total_samples=48), and the next piece continues it.
    assert main(["--config", str(REPO / "config" / "train_demo.yaml"), "--set", *overrides,
                 "total_samples=48", "warmup_samples=8", "stop_after_samples=40"]) == 0  # fmt: skip
    state = load_checkpoint(out / "last.pt")[2]
    assert state["samples"] == 40
    last_lr = [r for r in json.loads(state["history"]) if r["kind"] == "train"][-1]["lr"]
    schedule = load_train_config(None, ["total_samples=48", "warmup_samples=8"])
    assert last_lr == pytest.approx(get_lr(schedule, 32)) and last_lr < 0.9 * schedule.lr
    assert main(["--config", str(REPO / "config" / "train_demo.yaml"), "--set", *overrides,
                 "total_samples=48"]) == 0  # fmt: skip
    assert load_checkpoint(out / "last.pt")[2]["samples"] == 48
    # The auxiliary flow loss, starting from those weights (trained without a flow head).
    flow_out = tmp_path / "flow"
    assert main(["--config", str(REPO / "config" / "train_demo.yaml"), "--set", *overrides,
                 f"out_dir={flow_out}", f"init_from={out / 'best.pt'}", "flow_loss_weight=1", "amp_cpu=true",
                 "model_overrides={crop_size: 64, shared_stages: true, flow_head: true}"]) == 0  # fmt: skip
    rows = [json.loads(line) for line in (flow_out / "history.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["flow"]) and r["flow"] > 0 for r in rows if r["kind"] == "train")
    assert load_checkpoint(flow_out / "last.pt")[0].cfg.flow_head


@pytest.mark.slow
def test_tiny_robust_run_with_shifted_validation(tmp_path: Path) -> None:
    # The robust fine-tune's config (broad appearance, per-crop image standardisation, shifted validation)
    # from the shipped weights, a few steps.
    out = tmp_path / "robust"
    overrides = [f"out_dir={out}", f"init_from={REPO / 'models' / 'demo_refiner.pt'}", "total_samples=16",
                 "batch_size=8", "val_every_samples=16", "val_scenes=1", "val_shifted_scenes=1",
                 "num_workers=1", "log_every_steps=1"]  # fmt: skip
    assert (
        main(["--config", str(REPO / "config" / "train_demo_robust.yaml"), "--set", *overrides])
        == 0
    )
    rows = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    val = [r for r in rows if r["kind"] == "val"]
    assert len(val) == 1 and set(val[0]["add_0.1d_shifted"]) == set(val[0]["add_0.1d"])
    net = load_checkpoint(out / "best.pt")[0]
    assert net.cfg.image_norm == "per_crop" and net.cfg.crop_size == 96


@pytest.mark.slow
def test_data_parallel_run_on_two_cpu_processes_agrees_and_resumes(tmp_path: Path) -> None:
    # torchrun with 2 processes on the CPU (gloo): both end with identical parameters, and a second
    # command resumes the run from last.pt in both processes.
    import subprocess
    import sys

    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "attn6d_ros.train", "--config", str(REPO / "config" / "train_demo.yaml"), "--set",
           f"out_dir={out}", "total_samples=32", "batch_size=4", "val_every_samples=1000", "val_scenes=1",
           "num_workers=0", "threads=1", "device=cpu", "log_every_steps=1",
           "model_overrides={crop_size: 64, shared_stages: true}"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def run(*extra: str) -> str:
        done = subprocess.run([*cmd, *extra], capture_output=True, text=True, timeout=900, env=env)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return done.stdout + done.stderr

    def checksums(log: str) -> dict[int, str]:
        found = re.findall(
            r"rank (\d): parameters identical on all 2 ranks \(checksum (\S+)\)", log
        )
        return {int(rank): value for rank, value in found}

    first = checksums(run("stop_after_samples=16"))
    assert set(first) == {0, 1} and first[0] == first[1]
    assert load_checkpoint(out / "last.pt")[2]["samples"] == 16
    log = run()
    second = checksums(log)
    assert set(second) == {0, 1} and second[0] == second[1] and second[0] != first[0]
    assert log.count("resumed") == 2 and "at 16 samples" in log
    state = load_checkpoint(out / "last.pt")[2]
    assert state["samples"] == 32 and state["step"] == 4  # 2 + 2 steps of 2 x 4 samples


def test_config_rejects_unknown_keys_and_bad_values(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown train config keys"):
        load_train_config(None, ["learning_rate=0.1"])
    with pytest.raises(ValueError, match="model must be 'lite' or 'full'"):
        load_train_config(None, ["model=huge"])
    with pytest.raises(ValueError, match="key=value"):
        load_train_config(None, ["lr"])
    with pytest.raises(ValueError, match=r"train config.batch_size must be a int .* got 'big'"):
        load_train_config(None, ["batch_size=big"])
    with pytest.raises(ValueError, match="unknown model_overrides keys"):
        load_train_config(None, ["model_overrides={dropout: 0.5}"]).model_config()
    with pytest.raises(ValueError, match=r"direct_term_weights must be three .* got \[1, -2, 1\]"):
        load_train_config(None, ["direct_term_weights=[1, -2, 1]"])
    with pytest.raises(ValueError, match=r"direct_term_weights must be three .* got \[1, 1\]"):
        load_train_config(None, ["direct_term_weights=[1, 1]"])
    with pytest.raises(ValueError, match=r"flow_loss_weight 0.5 needs the flow head"):
        load_train_config(None, ["flow_loss_weight=0.5"])
    with pytest.raises(ValueError, match=r"flow_loss_weight must be a finite number >= 0, got -1"):
        load_train_config(None, ["flow_loss_weight=-1"])
    with pytest.raises(ValueError, match=r"stop_after_samples must be >= 0, got -1"):
        load_train_config(None, ["stop_after_samples=-1"])
    with pytest.raises(ValueError, match=r"direct_loss_beta must be a finite number > 0, got 0"):
        load_train_config(None, ["direct_loss_beta=0"])
    assert load_train_config(None, ["direct_loss_beta=0.1"]).direct_loss_beta == 0.1
    cfg = load_train_config(None, ["lr=1", "object_ids=[a, b]"])
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float) and cfg.object_ids == ("a", "b")
    assert (
        load_train_config(None, ["model_overrides={crop_size: 96}"]).model_config().crop_size == 96
    )


def test_direct_term_weights_pick_the_terms_of_the_loss() -> None:
    model = load_mesh(REPO / "models" / "demo_object.ply")
    batch = _batch(model, count=2)
    net = RefinerNet(ModelConfig.lite(crop_size=64, shared_stages=True)).eval()
    for weights, term in (((0.0, 1.0, 0.0), "z"), ((0.0, 0.0, 2.0), "rot")):
        cfg = TrainConfig(point_loss_weight=0.0, direct_term_weights=weights)
        step = TrainingStep(net, cfg, **_object_tensors(model))
        with torch.no_grad():
            loss, terms = step(batch)
        assert float(loss) == pytest.approx(max(weights) * float(terms[term]), rel=1e-5)
        assert float(terms[term]) > 0
    beta_step = TrainingStep(net, TrainConfig(direct_loss_beta=0.1), **_object_tensors(model))
    assert beta_step.scales.beta == 0.1


def test_flow_loss_weight_adds_the_flow_term() -> None:
    model = load_mesh(REPO / "models" / "demo_object.ply")
    batch = _batch(model, count=2)
    net = RefinerNet(ModelConfig.lite(crop_size=64, shared_stages=True, flow_head=True)).train()
    cfg = TrainConfig(
        point_loss_weight=0.0, direct_term_weights=(0.0, 0.0, 0.0), flow_loss_weight=2.0
    )
    loss, terms = TrainingStep(net, cfg, **_object_tensors(model))(batch)
    assert float(terms["flow"]) > 0 and loss.item() == pytest.approx(2.0 * float(terms["flow"]))


def test_cpu_bf16_autocast_keeps_the_loss_and_trains() -> None:
    # amp_cpu: the same loss within bf16 rounding (but not bit-equal: autocast did run) and finite grads.
    model = load_mesh(REPO / "models" / "demo_object.ply")
    batch = _batch(model, count=2)
    torch.manual_seed(0)
    net = RefinerNet(ModelConfig.lite(crop_size=64, shared_stages=True)).eval()
    for param in net.parameters():  # move the zero-initialised outputs off the identity update
        param.data.add_(0.01 * torch.randn_like(param))
    # TrainingStep.amp is what train() sets from amp_cpu on a CPU (the tiny run above goes through that).
    step = TrainingStep(net, TrainConfig(), **_object_tensors(model))
    with torch.no_grad():
        fp32, _ = step(batch)
    step.amp = True
    bf16, _ = step(batch)
    assert bf16.dtype == torch.float32 and float(bf16) != float(fp32)
    assert float(bf16) == pytest.approx(float(fp32), rel=0.05)
    bf16.backward()
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_unrolled_stages_start_from_the_pose_the_render_shows() -> None:
    # The first stage's update applies to T_cur (the pose of the sample's render), not to T_init; with
    # zero-initialised outputs every stage is the identity, so each later render is asked for at T_cur.
    model = load_mesh(REPO / "models" / "demo_object.ply")
    batch = _batch(model, count=2, later_stage_probability=1.0)
    assert not torch.allclose(batch.T_cur, batch.T_init)
    net = RefinerNet(ModelConfig.lite(crop_size=64, shared_stages=True)).eval()
    asked: list[tuple[torch.Tensor, torch.Tensor]] = []

    def render_stage(b, R, t):
        asked.append((R, t))
        return normalize_crop(b.render)

    step = TrainingStep(net, TrainConfig(unroll=True), **_object_tensors(model),
                        render_stage=render_stage)  # fmt: skip
    with torch.no_grad():
        loss, _ = step(batch)
    assert len(asked) == net.cfg.num_stages - 1 and torch.isfinite(loss)
    for R, t in asked:
        torch.testing.assert_close(R, batch.T_cur[:, :3, :3], atol=1e-5, rtol=0)
        torch.testing.assert_close(t, batch.T_cur[:, :3, 3], atol=1e-6, rtol=0)


def test_unrolled_training_starts_at_the_initial_noise_unless_asked() -> None:
    unrolled = TrainConfig(unroll=True)
    assert unrolled.synth_config(64).later_stage_probability == 0.0
    assert (
        TrainConfig().synth_config(64).later_stage_probability
        == SynthConfig().later_stage_probability
    )
    asked = TrainConfig(unroll=True, synth={"later_stage_probability": 0.25})
    assert asked.synth_config(64).later_stage_probability == 0.25


@pytest.mark.slow
def test_tiny_unrolled_run_renders_every_stage(tmp_path: Path) -> None:
    # The paper's mode end to end: all 4 stages per sample, stages 2-4 rendered in the main process.
    out = tmp_path / "unrolled"
    assert main(["--config", str(REPO / "config" / "train_demo.yaml"), "--set", f"out_dir={out}",
                 "unroll=true", "total_samples=8", "batch_size=4", "val_every_samples=8", "val_scenes=1",
                 "log_every_steps=1", "num_workers=0",
                 "model_overrides={crop_size: 64, shared_stages: false}"]) == 0  # fmt: skip
    rows = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if r["kind"] == "train"]
    assert len(train_rows) == 2 and all(np.isfinite(r["loss"]) for r in train_rows)
    net = load_checkpoint(out / "last.pt")[0]
    assert not net.cfg.shared_stages and net.cfg.num_stages == 4


def test_collate_stacks_samples_into_the_networks_types() -> None:
    # The DataLoader's collate_fn: the samples' arrays stacked in order, poses/K/zoom as float32, the
    # windows kept; an empty list is refused by name.
    model = load_mesh(REPO / "models" / "demo_object.ply")
    generator = SceneGenerator([model], SynthConfig(crop_size=64))
    samples = [generator.training_sample(5, i) for i in range(3)]
    generator.renderer.close()
    batch = collate_samples(samples)
    assert len(batch) == 3 and batch.image.dtype == torch.uint8
    assert batch.image.shape == batch.render.shape == (3, 64, 64, 3)
    assert batch.flow.shape == (3, 64, 64, 2) and batch.flow.dtype == torch.float32
    for name in ("T_gt", "T_init", "T_cur", "K", "zoom"):
        assert getattr(batch, name).dtype == torch.float32, name
    for j, sample in enumerate(samples):
        np.testing.assert_array_equal(batch.render[j].numpy(), sample.render)
        np.testing.assert_allclose(batch.T_cur[j].numpy(), sample.T_cur, atol=1e-6)
        assert batch.windows[j] == sample.window
        assert float(batch.zoom[j]) == pytest.approx(sample.window.zoom, rel=1e-6)
        assert int(batch.object_index[j]) == sample.object_index
    moved = batch.to(torch.device("cpu"))
    assert isinstance(moved, TrainingBatch) and torch.equal(moved.T_gt, batch.T_gt)
    with pytest.raises(ValueError, match="collate_samples needs at least one sample"):
        collate_samples([])


def _batch(
    model, count: int, difficulty: float = 1.0, later_stage_probability: float = 0.0
) -> TrainingBatch:
    synth = SynthConfig(crop_size=64, later_stage_probability=later_stage_probability)
    generator = SceneGenerator([model], synth)
    samples = [generator.training_sample(5, i, difficulty=difficulty) for i in range(count)]
    generator.renderer.close()
    return collate_samples(samples)


def _object_tensors(model) -> dict:
    return {
        "points": torch.from_numpy(model.points).float()[None],
        "diameters": torch.tensor([model.diameter]),
        "symmetric": torch.tensor([False]),
    }


@pytest.mark.slow
def test_lite_refiner_overfits_one_object() -> None:
    # Proof that rendering, crops, targets, losses and the update fit together: a few hundred steps on a
    # fixed batch of perturbed poses must bring the one-step point error clearly below the initial one.
    torch.manual_seed(0)
    model = load_mesh(REPO / "models" / "demo_object.ply")
    batch = _batch(model, count=16, difficulty=0.5)
    net = RefinerNet(ModelConfig.lite(crop_size=64, shared_stages=True))
    step = TrainingStep(net, TrainConfig(unroll=False), **_object_tensors(model))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)

    def point_error() -> float:
        net.eval()
        with torch.no_grad():
            out = net(normalize_crop(batch.image), normalize_crop(batch.render))
            T = batch.T_cur
            R, t = apply_update(T[:, :3, :3], T[:, :3, 3], batch.K, batch.zoom,
                                out.xy_px, out.dz, out.quat_xyzw)  # fmt: skip
        net.train()
        p = torch.from_numpy(model.points).float()
        est = p @ R.transpose(1, 2) + t[:, None]
        gt = p @ batch.T_gt[:, :3, :3].transpose(1, 2) + batch.T_gt[:, :3, 3][:, None]
        return float((est - gt).norm(dim=2).mean())

    before = point_error()
    for _ in range(150):
        loss, _ = step(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = point_error()
    assert after < 0.5 * before, f"mean point error {before * 1000:.1f} -> {after * 1000:.1f} mm"


@pytest.mark.slow
@pytest.mark.parametrize("config", ["train_linemod.yaml", "train_linemod_avgpool.yaml"])
def test_linemod_benchmark_configs_train_on_the_13_meshes(
    tmp_path: Path, linemod_dir: Path, config: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The README's LineMOD-mesh benchmark commands, cut to a few steps: all 13 meshes load and train.
    monkeypatch.setenv("ATTN6D_LINEMOD_DIR", str(linemod_dir))
    out = tmp_path / "run"
    overrides = [f"out_dir={out}", "total_samples=8", "batch_size=4", "val_every_samples=8",
                 "val_scenes=1", "num_workers=0"]  # fmt: skip
    assert main(["--config", str(REPO / "config" / config), "--set", *overrides]) == 0
    net, metadata, _ = load_checkpoint(out / "best.pt")
    assert len(metadata["objects"]) == 13
    assert net.cfg.pooling == ("average" if "avgpool" in config else "attention")
    assert net.cfg.flow_head  # both arms train with the auxiliary flow loss
