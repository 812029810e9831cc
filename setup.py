"""pip packaging of attn6d_ros for use outside ROS (`pip install .`); ROS 2 builds use CMakeLists.txt."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def _requirements(name: str) -> list[str]:
    lines = (HERE / "requirements" / name).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _share_files(folder: str) -> list[tuple[str, list[str]]]:
    files = [str(p) for p in sorted((HERE / folder).glob("*")) if p.is_file()]
    return [(f"share/attn6d_ros/{folder}", [str(Path(f).relative_to(HERE)) for f in files])]


setup(
    name="attn6d_ros",
    version="0.1.0",
    description="Multi-stage spatial-attention 6D pose refinement (Stevsic & Hilliges, 3DV 2020) "
    "as a library and a ROS 2 node",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["attn6d_ros", "attn6d_ros.*"]),
    install_requires=["torch>=2.1", *_requirements("runtime.txt")],
    data_files=[
        *_share_files("config"),
        *_share_files("models"),
        *_share_files("launch"),
        *_share_files("msg"),
    ],
    entry_points={
        "console_scripts": [
            "refine_node = attn6d_ros.node:main",
            "attn6d-demo = attn6d_ros.tools.demo:main",
            "attn6d-train = attn6d_ros.train:main",
            "attn6d-eval = attn6d_ros.evaluate:main",
            "attn6d-bench = attn6d_ros.tools.bench:main",
            "attn6d-make-demo-object = attn6d_ros.tools.demo_object:main",
            "attn6d-refine-bag = attn6d_ros.ros.refine_bag:main",
        ]
    },
)
