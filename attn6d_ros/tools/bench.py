"""attn6d-bench: speed of the refiner and the node; prints one JSON object.

First the renderer alone (render + read-back per 152x152 crop, both backends). Then, for each model config
(the paper's `full`, our `lite`, and the shipped checkpoint) on the chosen device: milliseconds per stage
split into crop, render, network and update, for 1, 4 and 16 objects per frame (all refined as one batch),
as medians over repeated runs after warm-up, and the alignment's milliseconds for all objects beside them
(align/, the node's default final stage; its templates loaded or built before timing); then the node's
end-to-end latency (image published -> refined pose received, 640x480, over
loopback, the node in its own process); and peak memory (RSS, CUDA). Timings depend only on the
architecture, not on the weights, so untrained networks stand in for configs without a checkpoint.

Two memory modes instead (bench_memory.py): `--memory [N ...]` prints the peak RSS of one refine call with
N detections (1, 16, 64, 256 by default), and `--soak-s SECONDS` the node's RSS over a long run at 10 Hz with
4 objects per frame (`attn6d-bench --soak-s 600`: the 10-minute soak; not part of the test suite).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from attn6d_ros.checkpoint import load_checkpoint
from attn6d_ros.mesh import ObjectModel, load_mesh
from attn6d_ros.network import ModelConfig, RefinerNet
from attn6d_ros.paths import resolve_path
from attn6d_ros.refiner import Refiner
from attn6d_ros.render import Renderer
from attn6d_ros.synth import SceneGenerator, SynthConfig
from attn6d_ros.tools.bench_memory import DEFAULT_COUNTS, bench_memory, bench_soak

DEFAULT_CHECKPOINT = "package://attn6d_ros/models/demo_refiner.pt"
DEFAULT_MESH = "package://attn6d_ros/models/demo_object.ply"


def _scene(
    model: ObjectModel, n_objects: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, list]:
    """A 640x480 synthetic image with `n_objects` copies of the object and their DeepIM-noisy poses."""
    generator = SceneGenerator([model], SynthConfig())
    rng = np.random.default_rng(seed)
    K = generator.sample_camera(rng)
    poses = [generator.sample_pose(rng, model, K) for _ in range(n_objects)]
    image = generator.renderer.render_scene([(model, T) for T in poses], K, 640, 480).rgb
    detections = [("object", generator.perturb(rng, T)) for T in poses]
    generator.renderer.close()
    return image, K, detections


def bench_refiner(
    net: RefinerNet,
    model: ObjectModel,
    device: str,
    counts: list[int],
    repeats: int,
    renderer: Renderer,
) -> dict:
    """Per-stage split and totals, medians over `repeats` runs after two warm-up runs, per object count."""
    refiner = Refiner(net, device=device, renderer=renderer)
    refiner.add_object("object", model)
    refiner.prepare_alignment()  # cached on disk after the first run; building is not timed
    stages = net.cfg.num_stages
    out = {}
    for n in counts:
        image, K, detections = _scene(model, n)
        for _ in range(2):  # warm-up: allocations, kernels, first render of this size
            refiner.refine(image, K, detections)
        runs = []
        for _ in range(repeats):
            refiner.refine(image, K, detections)
            runs.append(dict(refiner.last_timings_ms))
        median = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        aligns = []
        for _ in range(repeats):
            refiner.refine(image, K, detections, align=True)
            aligns.append(refiner.last_timings_ms["align"])
        out[f"{n}_objects"] = {
            "per_stage_ms": {
                k: round(median[k] / stages, 2) for k in ("render", "network", "update")
            },
            "crop_ms": round(median["crop"], 2),
            "score_ms": round(median["score"], 2),
            "align_ms": round(statistics.median(aligns), 1),  # all objects, after the stages
            "total_ms": round(median["total"], 1),
            "per_object_ms": round(median["total"] / n, 1),
        }
        if device.startswith("cuda"):
            torch.cuda.synchronize()
    return out


def bench_render(model: ObjectModel, repeats: int = 50) -> dict:
    """Render + read-back milliseconds per 152x152 crop, per backend (median of `repeats`)."""
    K = np.array([[600.0, 0.0, 75.5], [0.0, 600.0, 75.5], [0.0, 0.0, 1.0]])
    T = np.eye(4)
    T[2, 3] = 1.6 * K[0, 0] * model.diameter / 152  # the object fills the crop as in a refinement
    out = {"faces": len(model.faces)}
    for backend in ("moderngl", "pyrender"):
        try:
            renderer = Renderer(backend)
        except (ImportError, RuntimeError) as exc:
            out[backend] = {"error": str(exc)}
            continue
        times = []
        for i in range(repeats + 5):
            tic = time.perf_counter()
            renderer.render(model, T, K, 152, 152)
            if i >= 5:  # warm-up: upload, first framebuffer
                times.append((time.perf_counter() - tic) * 1000.0)
        batch = [(model, T, K)] * 16
        renderer.render_batch(batch, 152, 152)
        tic = time.perf_counter()
        renderer.render_batch(batch, 152, 152)
        out[backend] = {
            "ms_per_crop": round(statistics.median(times), 2),
            "ms_per_crop_in_batch_of_16": round((time.perf_counter() - tic) * 1000.0 / 16, 2),
            "renderer": renderer.describe(),
        }
        renderer.close()
    return out


def bench_node(checkpoint: str, repeats: int, timeout_s: float = 120.0) -> dict:
    """End-to-end latency of the node process: image publish -> refined/pose receipt, 640x480."""
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    env.setdefault("ROS_DOMAIN_ID", str(60 + os.getpid() % 40))
    proc = subprocess.run(
        [sys.executable, "-m", "attn6d_ros.tools.bench_node_client", checkpoint, str(repeats)],
        capture_output=True, text=True, env=env, timeout=timeout_s,
    )  # fmt: skip
    if proc.returncode != 0:
        return {"error": (proc.stderr or proc.stdout).strip().splitlines()[-1:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="attn6d-bench", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--configs", nargs="*", default=["lite", "full", "shipped"],
                        help="lite, full (untrained, crop 152) and/or shipped (the checkpoint)")  # fmt: skip
    parser.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT)
    parser.add_argument("--mesh", default=DEFAULT_MESH)
    parser.add_argument("--objects", type=int, nargs="*", default=[1, 4, 16])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--node", action=argparse.BooleanOptionalAction, default=True,
                        help="also time the ROS node end to end (needs rclpy)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--render-only", action="store_true", help="only the renderer timings")
    parser.add_argument("--memory", type=int, nargs="*", metavar="N", default=None,
                        help="only peak RSS of one refine call with N detections each, a fresh process "
                             f"per N (default {list(DEFAULT_COUNTS)}; bench_memory.py)")  # fmt: skip
    parser.add_argument(
        "--max-batch",
        type=int,
        default=None,
        help="with --memory: Refiner.max_batch (a huge value: all in one batch)",
    )
    parser.add_argument(
        "--memory-stages",
        type=int,
        default=1,
        help="with --memory: stages per refine call (the peak is that of one stage)",
    )
    parser.add_argument(
        "--soak-s",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="only the soak: the node's RSS over SECONDS of frames (bench_memory.py)",
    )
    parser.add_argument("--soak-rate-hz", type=float, default=10.0)
    parser.add_argument("--soak-objects", type=int, default=4)
    parser.add_argument("--soak-warmup-s", type=float, default=60.0)
    args = parser.parse_args(argv)
    if args.memory is not None or args.soak_s:
        return _memory_modes(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device
    device = "cpu" if device == "auto" else device
    model = load_mesh(resolve_path(args.mesh))
    renderer = Renderer()
    report: dict = {
        "device": device,
        "hardware": _hardware(device),
        "renderer": renderer.describe(),
        "torch": str(torch.__version__),
        "threads": torch.get_num_threads(),
        "configs": {},
    }
    report["render"] = bench_render(model)
    if args.render_only:
        renderer.close()
        print(json.dumps(report))
        return 0
    checkpoint = resolve_path(args.checkpoint)
    for name in args.configs:
        if name == "shipped":
            if not Path(checkpoint).is_file():
                report["configs"][name] = {"error": f"no checkpoint at {checkpoint}"}
                continue
            net, _, _ = load_checkpoint(checkpoint)
        elif name in ("lite", "full"):
            net = RefinerNet(ModelConfig.lite() if name == "lite" else ModelConfig.full())
        else:
            parser.error(f"unknown config {name!r}")
        entry = {"crop_size": net.cfg.crop_size, "stages": net.cfg.num_stages,
                 "parameters_per_stage": sum(p.numel() for p in net.stages[0].parameters())}  # fmt: skip
        entry.update(bench_refiner(net, model, device, args.objects, args.repeats, renderer))
        report["configs"][name] = entry
    if args.node:
        report["node"] = (
            bench_node(checkpoint, max(10, args.repeats * 4))
            if Path(checkpoint).is_file()
            else {"error": f"no checkpoint at {checkpoint}"}
        )
    report["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    if device.startswith("cuda"):
        report["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    renderer.close()
    print(json.dumps(report))
    return 0


def _memory_modes(args: argparse.Namespace) -> int:
    """--memory and --soak-s: one JSON object with the hardware and what was asked for."""
    checkpoint = resolve_path(args.checkpoint)
    device = "cpu" if args.device == "auto" and not torch.cuda.is_available() else args.device
    device = "cuda" if device == "auto" else device
    report: dict = {"device": device, "hardware": _hardware(device), "checkpoint": checkpoint}
    if args.memory is not None:
        counts = args.memory or list(DEFAULT_COUNTS)
        report["memory"] = bench_memory(
            checkpoint, device, counts, args.max_batch, args.memory_stages
        )
    if args.soak_s:
        report["soak"] = bench_soak(checkpoint, args.soak_s, args.soak_rate_hz, args.soak_objects,
                                    args.soak_warmup_s)  # fmt: skip
    print(json.dumps(report))
    return 0


def _hardware(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores"


if __name__ == "__main__":
    raise SystemExit(main())
