"""Shared pytest setup: DDS stays on loopback, ROS tests get their own domain, GPU tests need CUDA; the demo
object, a renderer and unoccluded demo scenes for the silhouette searches' tests."""

import itertools
import os
import signal
from pathlib import Path

import pytest

# Before anything can import rclpy: discovery never leaves loopback (Kilted ignores ROS_LOCALHOST_ONLY).
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"

# Started in the background (nohup, `cmd &` without job control) a process ignores SIGINT and its children
# inherit that: `ros2 launch` would then ignore the Ctrl-C the launch tests send it. Run as from a terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

REPO = Path(__file__).resolve().parents[1]
LINEMOD_DIR = Path(
    os.environ.get("ATTN6D_LINEMOD_DIR", REPO.parent / "shared" / "data" / "linemod_models")
)

# Domain ids 1..100, starting at an offset from the pid so that two test runs on one machine rarely share one.
_domain_ids = itertools.count(os.getpid() % 50)


@pytest.fixture
def ros_domain(monkeypatch: pytest.MonkeyPatch) -> int:
    """A ROS_DOMAIN_ID of this test's own, set in os.environ (child processes inherit it)."""
    domain = next(_domain_ids) % 100 + 1
    monkeypatch.setenv("ROS_DOMAIN_ID", str(domain))
    return domain


@pytest.fixture
def linemod_dir() -> Path:
    if not LINEMOD_DIR.is_dir():
        pytest.skip(f"LineMOD meshes not found at {LINEMOD_DIR} (set ATTN6D_LINEMOD_DIR)")
    return LINEMOD_DIR


@pytest.fixture(scope="module")
def demo_model():
    """The shipped demo object."""
    from attn6d_ros.mesh import load_mesh

    return load_mesh(REPO / "models" / "demo_object.ply")


@pytest.fixture(scope="module")
def gl_renderer():
    """An offscreen Renderer, closed after the module."""
    from attn6d_ros.render import Renderer

    with Renderer() as r:
        yield r


@pytest.fixture(scope="module")
def demo_scenes(demo_model) -> list:
    """Six unoccluded synthetic test scenes of the demo object (lit object, textured background, noise and
    blur; seed 31)."""
    from attn6d_ros.evaluate import synthetic_cases
    from attn6d_ros.synth import SynthConfig

    synth = SynthConfig(crop_size=64, occluder_probability=0.0)
    return synthetic_cases({"demo_object": demo_model}, 6, seed=31, synth=synth)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-init checkpoint for the node's tests (node_support.make_checkpoint), one per module."""
    from node_support import make_checkpoint

    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "m.pt")


@pytest.fixture
def ros(ros_domain: int):
    """rclpy for one test on its own domain; every in-process node destroyed at the end, also on failure."""
    from node_support import rclpy_session

    with rclpy_session():
        yield


@pytest.fixture(scope="session")
def colcon_install(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """attn6d_ros built with colcon into a workspace install space, once per session (colcon_workspace.py):
    `ros2 launch attn6d_ros ...` and the installed layout use it."""
    from colcon_workspace import build_workspace

    return build_workspace(tmp_path_factory.mktemp("colcon_ws"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if has_cuda:
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA (no GPU on this machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
