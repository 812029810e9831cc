"""attn6d-train: trains a refiner from meshes on synthetic data; resumable, single GPU, CPU or torchrun DDP.

    attn6d-train --config config/train_demo.yaml [--set key=value ...]

The loop is in plain sight (nanoGPT style): `train` gets its processes, data, model, optimiser and resumed
state from `_setup`, then runs `for batch in loader`. Batches are training_batch.TrainingBatch.
Two modes:

- single-step (`unroll: false`, for `shared_stages` models): every sample is one refinement step from a pose
  drawn either at the initial noise or closer to the truth (stages 2-4), DeepIM-style. Renders come ready
  from the data workers, so this is the cheapest mode.
- unrolled (`unroll: true`, the paper): all stages run on each sample, stage k+1 rendered at stage k's pose
  in the main process, and the losses of all stages are averaged (paper_facts.md §2.6, §3). Every sample
  starts at the initial noise: `synth.later_stage_probability` defaults to 0 in this mode.

In both modes the first stage updates the pose its render shows (a sample's `T_cur`).

Loss per stage (ours, for learnability; training_notes.md found a point loss alone did not learn on a CPU
budget): the paper's point-matching loss, normalised by (0.1 x diameter)², plus direct supervision of the
update's outputs against the exact targets (network.update_targets), with a curriculum from small to
DeepIM-sized perturbations and from plain to cluttered scenes.

Resuming: `out_dir/last.pt` holds the weights, optimiser, counters and config; a run started again with the
same out_dir continues from it. The data stream is a pure function of (seed, sample index), so a resumed run
sees the samples it would have seen.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import signal
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import yaml
from torch.utils.data import DataLoader, Dataset, Sampler

from attn6d_ros.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from attn6d_ros.config_from_dict import dataclass_from_dict
from attn6d_ros.crop import crop_intrinsics
from attn6d_ros.crop_render import poses_from_tensors, render_into_crops
from attn6d_ros.evaluate import evaluate, synthetic_cases
from attn6d_ros.mesh import ObjectModel
from attn6d_ros.network import (
    DirectLossScales,
    ModelConfig,
    RefinerNet,
    apply_update,
    direct_update_loss,
    flow_loss,
    normalize_crop,
    point_matching_loss,
    update_targets,
)
from attn6d_ros.objects import load_objects
from attn6d_ros.paths import resolve_path
from attn6d_ros.refiner import Refiner, resolve_device
from attn6d_ros.render import Renderer
from attn6d_ros.shifted_scenes import shifted_cases
from attn6d_ros.synth import SceneGenerator, SynthConfig, TrainingSample
from attn6d_ros.training_batch import TrainingBatch, collate_samples

log = logging.getLogger("attn6d_ros.train")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs; `config/train_demo.yaml` trains the shipped demo weights."""

    objects_file: str = "package://attn6d_ros/config/objects.yaml"
    object_ids: tuple[str, ...] = ()  # empty: every object of the table
    occluder_objects_file: str = ""  # optional table of extra occluder/clutter meshes
    model: str = "lite"  # "lite" or "full" preset ...
    model_overrides: dict = field(
        default_factory=dict
    )  # ... with these ModelConfig fields changed
    synth: dict = field(default_factory=dict)  # SynthConfig fields
    out_dir: str = "runs/demo"
    init_from: str = ""  # start from these weights (fine-tuning); ignored when resuming
    seed: int = 0
    unroll: bool = False  # all stages per sample (paper); else single-step (shared_stages models)
    batch_size: int = 32
    total_samples: int = 1_000_000
    # End this run once it has seen this many samples (0: at total_samples); the schedule still spans
    # total_samples, so a run cut into pieces (sessions, time-limited machines) follows one schedule.
    stop_after_samples: int = 0
    lr: float = 1e-3
    min_lr: float = 2e-5
    warmup_samples: int = 20_000
    weight_decay: float = (
        1e-4  # on conv and linear weights only (the paper decays conv kernels only)
    )
    grad_clip: float = 5.0
    point_loss_weight: float = 0.25  # the paper's factor on the mean squared point distance
    direct_loss_weight: float = 1.0
    # Weights of the direct terms: image shift, depth, rotation (e.g. (1, 3, 1) to press on depth, which
    # limits ADD once rotation is within a few degrees; docs/results.md, "Shipped weights").
    direct_term_weights: tuple[float, float, float] = (1.0, 1.0, 1.0)
    # Smooth-L1 beta of the direct terms, normalised units (network.DirectLossScales.beta): 1 is quadratic
    # below one scale; a small value (e.g. 0.1) is L1-like, which keeps training the last per cent of depth.
    direct_loss_beta: float = 1.0
    # Auxiliary flow loss (ours, after DeepIM; needs model_overrides.flow_head: true): the first stage also
    # predicts the rendered object's image motion per grid cell. docs/tools.md, "attn6d-train".
    flow_loss_weight: float = 0.0
    curriculum_samples: int = 200_000  # difficulty ramps from 0 to 1 over these samples
    num_workers: int = 1  # data processes (each renders with its own EGL context)
    threads: int = 0  # torch threads in the main process (0: torch's default)
    device: str = "auto"
    amp: bool = True  # bf16 autocast on CUDA
    # bf16 autocast on the CPU too (ours): on a CPU with native bf16 (AVX512-BF16, AMX) a lite training step
    # took 0.65x the time of fp32 here; without it the arithmetic is emulated, so it is off unless asked for.
    amp_cpu: bool = False
    val_every_samples: int = 50_000
    val_scenes: int = 100  # per object
    # Per object, also validated on this many shifted scenes (shifted_scenes.py: other renderer, held-out
    # photographs, camera effects; never trained on), reported as "add_0.1d_shifted"; best.pt is then chosen
    # by the mean of both final accuracies. 0: in-domain validation only.
    val_shifted_scenes: int = 0
    val_seed: int = 777
    log_every_steps: int = 50
    checkpoint_every_seconds: float = 600.0

    @staticmethod
    def from_dict(values: dict) -> TrainConfig:
        cfg = dataclass_from_dict(TrainConfig, values, "train config")
        if cfg.model not in ("lite", "full"):
            raise ValueError(f"model must be 'lite' or 'full', got {cfg.model!r}")
        weights = cfg.direct_term_weights
        if len(weights) != 3 or not all(_is_weight(w) for w in weights):
            raise ValueError(
                "direct_term_weights must be three finite weights >= 0 (image shift, depth, rotation), "
                f"got {list(weights)}"
            )
        if cfg.stop_after_samples < 0:
            raise ValueError(f"stop_after_samples must be >= 0, got {cfg.stop_after_samples}")
        if cfg.batch_size < 2:
            raise ValueError(f"batch_size must be >= 2 (BatchNorm), got {cfg.batch_size}")
        beta = cfg.direct_loss_beta
        if not _is_weight(beta) or beta == 0:
            raise ValueError(f"direct_loss_beta must be a finite number > 0, got {beta!r}")
        flow_weight = cfg.flow_loss_weight
        if not _is_weight(flow_weight):
            raise ValueError(f"flow_loss_weight must be a finite number >= 0, got {flow_weight!r}")
        if flow_weight > 0 and not cfg.model_config().flow_head:
            raise ValueError(
                f"flow_loss_weight {flow_weight} needs the flow head: set model_overrides.flow_head: true"
            )
        return cfg

    def model_config(self) -> ModelConfig:
        preset = ModelConfig.lite() if self.model == "lite" else ModelConfig.full()
        values = {**preset.to_dict(), **self.model_overrides}
        return dataclass_from_dict(ModelConfig, values, "model_overrides")

    def synth_config(self, crop_size: int) -> SynthConfig:
        """The data's config. Unrolled training starts every sample at the initial noise (the paper) unless
        `synth` sets later_stage_probability itself; single-step training keeps SynthConfig's default."""
        values = dict(self.synth)
        if self.unroll:
            values.setdefault("later_stage_probability", 0.0)
        return replace(SynthConfig.from_dict(values), crop_size=crop_size)


def _is_weight(value: object) -> bool:
    """A loss weight: a finite int or float >= 0 (not a bool)."""
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


class SyntheticSamples(Dataset):
    """Index i -> training sample i of the seeded synthetic stream (rendered in the worker process)."""

    def __init__(self, generator: SceneGenerator, seed: int, curriculum_samples: int) -> None:
        self.generator = generator
        self.seed = seed
        self.curriculum_samples = curriculum_samples

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, index: int) -> TrainingSample:
        difficulty = min(1.0, index / max(1, self.curriculum_samples))
        return self.generator.training_sample(self.seed, index, difficulty)


class StreamSampler(Sampler[int]):
    """Sample indices start, start + stride, ... (`stride` = world size; each rank its own offset)."""

    def __init__(self, start: int, stride: int = 1) -> None:
        self.start = start
        self.stride = stride

    def __iter__(self):
        index = self.start
        while True:
            yield index
            index += self.stride


def get_lr(cfg: TrainConfig, samples: int) -> float:
    """Linear warm-up, then cosine decay to min_lr at total_samples."""
    if samples < cfg.warmup_samples:
        return cfg.lr * (samples + 1) / cfg.warmup_samples
    progress = min(
        1.0, (samples - cfg.warmup_samples) / max(1, cfg.total_samples - cfg.warmup_samples)
    )
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * progress))


def make_optimizer(net: RefinerNet, cfg: TrainConfig) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, param in net.named_parameters():
        (decay if param.dim() > 1 and "norm" not in name else no_decay).append(param)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr)


class TrainingStep(torch.nn.Module):
    """One training step's forward: every stage from the starting pose, rendering in between, and the
    averaged loss. A single forward per step lets DistributedDataParallel wrap it."""

    def __init__(
        self,
        net: RefinerNet,
        cfg: TrainConfig,
        points: torch.Tensor,
        diameters: torch.Tensor,
        symmetric: torch.Tensor,
        render_stage=None,
    ) -> None:
        super().__init__()
        self.net = net
        self.cfg = cfg
        self.n_stages = net.cfg.num_stages if cfg.unroll else 1
        self.register_buffer("points", points)  # (objects, P, 3) metres
        self.register_buffer("diameters", diameters)
        self.register_buffer("symmetric", symmetric)
        # (batch, R, t) -> normalised renders at those poses in the batch's windows; unrolled training only.
        self.render_stage = render_stage
        self.scales = DirectLossScales.for_crop(net.cfg.crop_size, beta=cfg.direct_loss_beta)
        self.register_buffer(
            "term_weights", torch.tensor(cfg.direct_term_weights, dtype=torch.float32)
        )
        self.amp = False

    def forward(self, batch: TrainingBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Returns the loss and, for logging, the last stage's terms: point, xy, z, rot (batch means)."""
        cfg = self.cfg
        image = normalize_crop(batch.image).contiguous(memory_format=torch.channels_last)
        render = normalize_crop(batch.render).contiguous(memory_format=torch.channels_last)
        # The pose the sample's render shows; in unrolled training it is T_init unless the synth config
        # asks for closer starts (later_stage_probability, rotation_only_probability).
        R, t = batch.T_cur[:, :3, :3], batch.T_cur[:, :3, 3]
        K, zoom = batch.K, batch.zoom
        R_gt, t_gt = batch.T_gt[:, :3, :3], batch.T_gt[:, :3, 3]
        idx = batch.object_index
        symmetric = self.symmetric[idx]
        scale = (0.1 * self.diameters[idx]) ** 2  # point loss 1.0 = the ADD threshold, squared
        loss = torch.zeros((), device=image.device)
        for k in range(self.n_stages):
            with torch.autocast(image.device.type, dtype=torch.bfloat16, enabled=self.amp):
                out = self.net(image, render, stage=k)
            xy, dz, q = out.xy_px.float(), out.dz.float(), out.quat_xyzw.float()
            R_new, t_new = apply_update(R, t, K, zoom, xy, dz, q)
            point = (
                point_matching_loss(R_new, t_new, R_gt, t_gt, self.points[idx], symmetric) / scale
            )
            with torch.no_grad():
                xy_t, dz_t, rv_t = update_targets(R.detach(), t.detach(), R_gt, t_gt, K, zoom)
            out.xy_px, out.dz, out.quat_xyzw = xy, dz, q
            direct = direct_update_loss(out, xy_t, dz_t, rv_t, self.scales, symmetric)
            stage = (
                cfg.point_loss_weight * point.mean()
                + cfg.direct_loss_weight * (direct * self.term_weights).sum(1).mean()
            )
            # The flow target belongs to the sample's render: the first stage's input.
            if k == 0 and cfg.flow_loss_weight > 0:
                flow = flow_loss(out.flow_px.float(), batch.flow, self.scales.xy_px).mean()
                stage = stage + cfg.flow_loss_weight * flow
            loss = loss + stage / self.n_stages
            R, t = R_new, t_new  # no stop-gradient between stages (paper_facts.md §2.6)
            if k + 1 < self.n_stages:
                render = self.render_stage(batch, R.detach(), t.detach())
        terms = direct.detach().mean(0)
        logged = {"point": point.mean().detach(), "xy": terms[0], "z": terms[1], "rot": terms[2]}
        if cfg.flow_loss_weight > 0:
            logged["flow"] = flow.detach()
        return loss, logged


def train(cfg: TrainConfig) -> Path:
    """Runs (or resumes) a training run; returns the path of the best checkpoint."""
    run = _setup(cfg)
    net, optimizer, out_dir, world = run.net, run.optimizer, run.out_dir, run.world
    samples, step, best_acc, history = run.samples, run.step, run.best_acc, run.history
    last = out_dir / "last.pt"

    def save(path: Path, with_state: bool) -> None:
        state = None
        if with_state:
            state = {"optimizer": optimizer.state_dict(), "samples": samples, "step": step,
                     "best_acc": best_acc, "history": json.dumps(history)}  # fmt: skip
        metadata = _metadata(cfg, run.models, samples, step, history)
        save_checkpoint(path, net, metadata=metadata, train_state=state)

    stop = {"flag": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(flag=True))
    last_save = time.monotonic()
    next_val = (samples // cfg.val_every_samples + 1) * cfg.val_every_samples
    tic = time.perf_counter()
    stats: dict[str, float] = {"loss": 0.0, "n": 0}
    progress = _progress(cfg, samples, run.main_rank)
    try:
        for batch in run.loader:
            if samples >= cfg.total_samples or stop["flag"]:
                break
            if cfg.stop_after_samples and samples >= cfg.stop_after_samples:
                break
            lr = get_lr(cfg, samples)
            for group in optimizer.param_groups:
                group["lr"] = lr
            batch = batch.to(run.device, non_blocking=True)
            loss, terms = run.model(batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
            optimizer.step()
            step += 1
            samples += cfg.batch_size * world
            stats["n"] += 1
            stats["loss"] += loss.item()
            for key, value in terms.items():
                stats[key] = stats.get(key, 0.0) + float(value)
            if progress is not None:
                progress.update(cfg.batch_size * world)
            if run.main_rank and step % cfg.log_every_steps == 0:
                elapsed = time.perf_counter() - tic
                n = stats.pop("n")
                row = {"kind": "train", "samples": samples, "step": step, "lr": lr,
                       **{k: v / n for k, v in stats.items()},
                       "samples_per_s": n * cfg.batch_size * world / elapsed}  # fmt: skip
                history.append(row)
                _append_jsonl(out_dir / "history.jsonl", row)
                if progress is not None:
                    progress.set_postfix(
                        loss=f"{row['loss']:.3f}", sps=f"{row['samples_per_s']:.0f}"
                    )
                stats = {"loss": 0.0, "n": 0}
                tic = time.perf_counter()
            if run.main_rank and samples >= next_val:
                next_val += cfg.val_every_samples
                acc, row = run.validator.run(net, samples)
                net.train()
                history.append(row)
                _append_jsonl(out_dir / "history.jsonl", row)
                log.info("validation at %d samples: %s %s", samples, json.dumps(row["add_0.1d"]),
                         json.dumps(row.get("add_0.1d_shifted", "")))  # fmt: skip
                if acc > best_acc:
                    best_acc = acc
                    save(out_dir / "best.pt", with_state=False)
                save(last, with_state=True)
                last_save = time.monotonic()
                tic = time.perf_counter()
            if run.main_rank and time.monotonic() - last_save > cfg.checkpoint_every_seconds:
                save(last, with_state=True)
                last_save = time.monotonic()
        if world > 1:
            _check_ranks_agree(net, run.rank, world)
    finally:
        if run.main_rank:
            save(last, with_state=True)
            if not (out_dir / "best.pt").exists():
                save(out_dir / "best.pt", with_state=False)
        if progress is not None:
            progress.close()
        if world > 1:
            torch.distributed.destroy_process_group()
    return out_dir / "best.pt"


# ----------------------------------------------------------------------------------------------------------
# Setup: processes, objects and data, model and optimiser, and the state a run resumes from.


@dataclass
class _Run:
    """A training run, set up by `_setup`: what `train`'s loop needs, and where it resumes."""

    rank: int  # this process (torchrun's RANK); rank 0 validates, logs and saves
    world: int  # number of processes (torchrun's WORLD_SIZE)
    device: torch.device
    out_dir: Path
    models: dict[str, ObjectModel]  # the objects trained on, by id
    net: RefinerNet
    model: torch.nn.Module  # the TrainingStep, in DistributedDataParallel when world > 1
    optimizer: torch.optim.Optimizer
    loader: DataLoader  # yields TrainingBatch; this rank's share of the stream from `samples` on
    validator: _Validator | None  # rank 0 only
    samples: int  # samples seen (all ranks), steps and best validation accuracy so far; 0, 0, -1 when new
    step: int
    best_acc: float
    history: list[dict]  # logged rows so far

    @property
    def main_rank(self) -> bool:
        return self.rank == 0


def _setup(cfg: TrainConfig) -> _Run:
    """Joins the processes, loads the objects, builds the data, model and optimiser, and resumes from
    `out_dir/last.pt` when it exists (else starts from `init_from` weights when given)."""
    rank, world, device = _init_processes(cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed + rank)
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    # -- objects, data --
    models = load_objects(resolve_path(cfg.objects_file), list(cfg.object_ids) or None)
    occluders = (
        list(load_objects(resolve_path(cfg.occluder_objects_file)).values())
        if cfg.occluder_objects_file
        else []
    )
    model_cfg = cfg.model_config()
    if not cfg.unroll and not model_cfg.shared_stages:
        raise ValueError(
            "single-step training (unroll: false) needs model_overrides.shared_stages: true"
        )
    synth = cfg.synth_config(model_cfg.crop_size)
    generator = SceneGenerator(list(models.values()), synth, occluders)
    # Shifted validation scenes are made before any Renderer of ours exists (pyrender's EGL context comes and
    # goes first).
    shifted_val = (
        shifted_cases(models, cfg.val_shifted_scenes, cfg.val_seed)
        if rank == 0 and cfg.val_shifted_scenes
        else []
    )

    # -- model, optimiser, resume --
    net = RefinerNet(model_cfg)
    optimizer = make_optimizer(net, cfg)
    samples, step, best_acc, history = _load_weights(cfg, out_dir / "last.pt", net, optimizer)
    net = net.to(device).to(memory_format=torch.channels_last).train()
    _optimizer_to(optimizer, device)
    renderer = Renderer() if (cfg.unroll or rank == 0) else None
    step_module = TrainingStep(
        net,
        cfg,
        points=torch.from_numpy(np.stack([m.points for m in models.values()])).float(),
        diameters=torch.tensor([m.diameter for m in models.values()], dtype=torch.float32),
        symmetric=torch.tensor([m.symmetric for m in models.values()]),
        render_stage=lambda b, R, t: _render_stage(renderer, generator, b, R, t, device),
    ).to(device)
    step_module.amp = (cfg.amp and device.type == "cuda") or (cfg.amp_cpu and device.type == "cpu")
    model = torch.nn.parallel.DistributedDataParallel(step_module) if world > 1 else step_module
    loader = DataLoader(
        SyntheticSamples(generator, cfg.seed, cfg.curriculum_samples),
        batch_size=cfg.batch_size,
        sampler=StreamSampler(samples + rank, world),
        num_workers=cfg.num_workers,
        multiprocessing_context="spawn" if cfg.num_workers else None,
        persistent_workers=cfg.num_workers > 0,
        prefetch_factor=4 if cfg.num_workers else None,
        pin_memory=device.type == "cuda",
        collate_fn=collate_samples,
    )
    validator = _Validator(cfg, models, renderer, synth, shifted_val) if rank == 0 else None
    return _Run(rank=rank, world=world, device=device, out_dir=out_dir, models=models, net=net,
                model=model, optimizer=optimizer, loader=loader, validator=validator, samples=samples,
                step=step, best_acc=best_acc, history=history)  # fmt: skip


def _init_processes(cfg: TrainConfig) -> tuple[int, int, torch.device]:
    """(rank, world size, device) of this process; under torchrun (which sets RANK, WORLD_SIZE and
    LOCAL_RANK) it also joins the process group: NCCL on CUDA, one GPU per process, else gloo."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = resolve_device(cfg.device)
    if world > 1:
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend)
        if device.type == "cuda":
            device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}")
            torch.cuda.set_device(device)
    return rank, world, device


def _load_weights(
    cfg: TrainConfig, last: Path, net: RefinerNet, optimizer: torch.optim.Optimizer
) -> tuple[int, int, float, list[dict]]:
    """Loads `last` (a run to resume) into `net` and `optimizer`, or else the `init_from` weights into `net`;
    returns the (samples, step, best_acc, history) to continue from: (0, 0, -1.0, []) for a new run.

    Raises:
        ValueError: `last` holds another model config, or the init_from weights do not fit the model.
    """
    if last.is_file():
        loaded, _, state = load_checkpoint(last)
        if loaded.cfg != net.cfg:
            raise ValueError(f"{last} holds a different model config; use another out_dir")
        net.load_state_dict(loaded.state_dict())
        optimizer.load_state_dict(state["optimizer"])
        log.info("resumed %s at %d samples (step %d)", last, state["samples"], state["step"])
        history = json.loads(state.get("history", "[]"))
        return state["samples"], state["step"], state.get("best_acc", -1.0), history
    if cfg.init_from:
        loaded, _, _ = load_checkpoint(resolve_path(cfg.init_from))
        # A flow head or depth moments may be added to weights trained without them (they start from
        # their initialisation).
        missing, unexpected = net.load_state_dict(loaded.state_dict(), strict=False)
        addable = (".flow_head.", ".moment_regressor.")
        if unexpected or any(not any(part in key for part in addable) for key in missing):
            raise ValueError(
                f"init_from {cfg.init_from} does not fit the model config: missing {missing}, "
                f"unexpected {unexpected}"
            )
        log.info("initialised from %s", cfg.init_from)
    return 0, 0, -1.0, []


def _metadata(
    cfg: TrainConfig, models: dict[str, ObjectModel], samples: int, step: int, history: list[dict]
) -> dict:
    """A checkpoint's metadata: the objects trained on, the counters, the config and recent history."""
    return {
        "objects": {
            i: {"diameter": m.diameter, "symmetric": m.symmetric} for i, m in models.items()
        },
        "samples_seen": samples,
        "steps": step,
        "train_config": json.dumps(asdict(cfg)),
        "history": json.dumps(history[-50:]),
        "torch": str(torch.__version__),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def _check_ranks_agree(net: RefinerNet, rank: int, world: int) -> None:
    """Data-parallel training: every rank must end with the same parameters (DDP averages the gradients, so
    they only drift apart through a bug). Compares per-tensor float64 sums across ranks and logs them;
    raises RuntimeError when they differ. (BatchNorm statistics are rank 0's, which is what is saved.)"""
    sums = torch.stack([p.detach().double().sum().cpu() for p in net.parameters()])
    gathered = [torch.zeros_like(sums) for _ in range(world)]
    torch.distributed.all_gather_object(gathered, sums)
    checksum = float(sums.sum())
    if any(not torch.equal(other, gathered[0]) for other in gathered):
        raise RuntimeError(
            f"rank {rank}: parameters differ between the {world} ranks after training"
        )
    log.info(
        "rank %d: parameters identical on all %d ranks (checksum %.12e)", rank, world, checksum
    )


def _render_stage(
    renderer: Renderer,
    generator: SceneGenerator,
    batch: TrainingBatch,
    R: torch.Tensor,
    t: torch.Tensor,
    device: torch.device,
) -> torch.Tensor:
    """Renders every sample at its current pose (R, t) into its fixed crop window (unrolled training)."""
    models = [generator.objects[int(i)] for i in batch.object_index]
    K = batch.K.double().cpu().numpy()  # the float32 K the network uses, as the update does
    crop_Ks = [crop_intrinsics(K[j], window) for j, window in enumerate(batch.windows)]
    return render_into_crops(renderer, models, poses_from_tensors(R, t), crop_Ks,
                             generator.cfg.crop_size, device)  # fmt: skip


class _Validator:
    """Refines a fixed synthetic validation set with the current weights (same path as attn6d-eval), and the
    shifted one when given; the score is the final accuracy (the mean of both with shifted cases)."""

    def __init__(
        self, cfg: TrainConfig, models: dict[str, ObjectModel], renderer, synth, shifted: list
    ) -> None:
        self.models = models
        self.cases = synthetic_cases(models, cfg.val_scenes, cfg.val_seed, synth)
        self.shifted = shifted
        self.renderer = renderer

    def run(self, net: RefinerNet, samples: int) -> tuple[float, dict]:
        refiner = Refiner(net, device=str(next(net.parameters()).device), renderer=self.renderer)
        for object_id, model in self.models.items():
            refiner.add_object(object_id, model)
        mean = evaluate(refiner, self.cases, self.models)["mean"]
        row = {"kind": "val", "samples": samples, "add_0.1d": mean["add_0.1d"],
               "median_rot_err_deg": mean["median_rot_err_deg"],
               "median_trans_err_mm": mean["median_trans_err_mm"],
               "occlusion": {b: v["add_0.1d"] for b, v in mean["occlusion"].items()}}  # fmt: skip
        finals = [list(mean["add_0.1d"].values())[-1]]
        if self.shifted:
            shifted = evaluate(refiner, self.shifted, self.models)["mean"]
            row["add_0.1d_shifted"] = shifted["add_0.1d"]
            row["median_rot_err_deg_shifted"] = shifted["median_rot_err_deg"]
            finals.append(list(shifted["add_0.1d"].values())[-1])
        return float(np.mean(finals)), row


def _optimizer_to(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    for state in optimizer.state.values():
        for key, value in state.items():
            if torch.is_tensor(value):
                state[key] = value.to(device)


def _append_jsonl(path: Path, row: dict) -> None:
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")


def _progress(cfg: TrainConfig, samples: int, main_rank: bool):
    if not main_rank:
        return None
    from tqdm import tqdm

    return tqdm(total=cfg.total_samples, initial=samples, unit="sample", dynamic_ncols=True,
                mininterval=10.0)  # fmt: skip


def load_train_config(path: str | None, overrides: list[str]) -> TrainConfig:
    """Reads a YAML config and applies `key=value` overrides (values parsed as YAML)."""
    values = {}
    if path:
        values = yaml.safe_load(Path(resolve_path(path)).read_text()) or {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"--set expects key=value, got {item!r}")
        values[key.strip()] = yaml.safe_load(raw)
    return TrainConfig.from_dict(values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="attn6d-train", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="training YAML (see config/train_demo.yaml)")
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="KEY=VALUE", help="override config keys"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    cfg = load_train_config(args.config, args.set)
    best = train(cfg)
    log.info("best weights: %s", best)
    return 0


__all__ = ["TrainConfig", "load_train_config", "main", "read_checkpoint", "train"]

if __name__ == "__main__":
    raise SystemExit(main())
