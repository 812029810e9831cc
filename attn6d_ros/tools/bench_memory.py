"""attn6d-bench's memory modes: peak RSS of one `refine` call per detection count, and the node's RSS over a
long run at a steady frame rate (the soak). Both print one JSON object (issue 30).

- `bench_memory`: for each count (1, 16, 64, 256 by default) a fresh process loads the checkpoint, warms up
  with one detection, then refines one 640x480 frame with that many detections; it reports the RSS after
  the warm-up and the process's peak RSS (ru_maxrss). A fresh process per count: the peak only grows.
  One stage by default: the peak is that of one network call, each stage frees the last one's memory.
  `max_batch` overrides Refiner.max_batch (a huge value gives the old one-batch behaviour, for comparison).
- `bench_soak`: the node in its own process, fed frames with several objects at a fixed rate (a few bad
  frames mixed in) for a given time; its RSS is sampled throughout (bench_soak_client.py).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_COUNTS = (1, 16, 64, 256)


def rss_mb(pid: int | str = "self") -> float:
    """Resident set size of a process, MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS in /proc/{pid}/status")


def bench_memory(
    checkpoint: str, device: str, counts: list[int], max_batch: int | None = None, stages: int = 1
) -> dict:
    """{count: {rss_after_warmup_mb, peak_rss_mb, refine_s}}, each count in a fresh process."""
    out = {}
    for n in counts:
        command = [sys.executable, "-m", "attn6d_ros.tools.bench_memory", "--child", str(n),
                   "--checkpoint", checkpoint, "--device", device, "--stages", str(stages)]  # fmt: skip
        if max_batch is not None:
            command += ["--max-batch", str(max_batch)]
        proc = subprocess.run(command, capture_output=True, text=True, timeout=3600)
        if proc.returncode != 0:
            out[str(n)] = {"error": (proc.stderr or proc.stdout).strip().splitlines()[-1:]}
            continue
        out[str(n)] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def _child(n: int, checkpoint: str, device: str, max_batch: int | None, stages: int) -> dict:
    """One refine call with `n` detections; RSS after warm-up and peak (this process)."""
    from attn6d_ros.mesh import load_mesh
    from attn6d_ros.paths import resolve_path
    from attn6d_ros.refiner import Refiner
    from attn6d_ros.tools.bench import _scene

    model = load_mesh(resolve_path("package://attn6d_ros/models/demo_object.ply"))
    refiner = Refiner.from_checkpoint(checkpoint, device=device)
    refiner.add_object("object", model)
    if max_batch is not None:
        refiner.max_batch = max_batch
    image, K, detections = _scene(model, n, seed=n)
    refiner.refine(image, K, detections[:1], stages=stages)  # warm-up: kernels, context, mesh
    after_warmup = rss_mb()
    tic = time.perf_counter()
    results = refiner.refine(image, K, detections, stages=stages)
    elapsed = time.perf_counter() - tic
    return {
        "detections": n,
        "refined": sum(r.ok for r in results),
        "max_batch": refiner.max_batch,
        "stages": stages,
        "rss_after_warmup_mb": round(after_warmup, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "refine_s": round(elapsed, 2),
    }


def bench_soak(
    checkpoint: str, duration_s: float, rate_hz: float, objects: int, warmup_s: float
) -> dict:
    """The node's RSS over `duration_s` of frames at `rate_hz` with `objects` objects each."""
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    env.setdefault("ROS_DOMAIN_ID", str(60 + os.getpid() % 40))
    variables = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")
    if not any(env.get(v) for v in variables):  # 640x480 best-effort frames need it (README)
        from attn6d_ros.paths import resolve_path

        profile = resolve_path("package://attn6d_ros/config/fastdds_large_frames_loopback.xml")
        env.update(dict.fromkeys(variables, profile))
    proc = subprocess.run(
        [sys.executable, "-m", "attn6d_ros.tools.bench_soak_client", checkpoint, str(duration_s),
         str(rate_hz), str(objects), str(warmup_s)],
        capture_output=True, text=True, env=env, timeout=duration_s + 600,
    )  # fmt: skip
    if proc.returncode != 0:
        return {"error": (proc.stderr or proc.stdout).strip().splitlines()[-5:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="child process of attn6d-bench --memory")
    parser.add_argument("--child", type=int, required=True)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--max-batch", type=int, default=None)
    parser.add_argument("--stages", type=int, default=1)
    args = parser.parse_args(argv)
    print(
        json.dumps(_child(args.child, args.checkpoint, args.device, args.max_batch, args.stages))
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
