"""package.xml declares every package the installed code imports, with keys rosdep resolves on Jazzy: ROS 2
packages by name, Python libraries by their python3-* keys, and the libraries without a key there in
requirements/runtime.txt (pip) instead."""

import ast
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from conftest import REPO

# Import name -> the ROS 2 package that provides it, where the two differ.
ROS_PACKAGE_OF = {"tf2_ros": "tf2_ros_py"}
ROS_MODULES = {
    "rclpy", "rcl_interfaces", "builtin_interfaces", "launch", "launch_ros", "message_filters", "tf2_ros",
    "cv_bridge", "ament_index_python", "std_srvs",
}  # fmt: skip
# Python libraries with a rosdep key (rosdistro rosdep/python.yaml) that resolves on Ubuntu 24.04.
ROSDEP_KEY_OF = {
    "numpy": "python3-numpy",
    "scipy": "python3-scipy",
    "yaml": "python3-yaml",
    "tqdm": "python3-tqdm",
    "PIL": "python3-pil",
    "OpenGL": "python3-opengl",
    "skimage": "python3-skimage",
    "cv2": "python3-opencv",
}
# Without one there (python3-torch: no Ubuntu 24.04 package; trimesh: a pip key only): pip, with the
# requirement name that installs each.
PIP_ONLY = {"torch": "torch", "trimesh": "trimesh", "moderngl": "moderngl",
            "pyrender": "pyrender-maintained", "rosbags": "rosbags"}  # fmt: skip


def _installed_sources() -> list[Path]:
    """What the package installs and runs (attn6d_ros/, launch/, the ROS executable), as committed: files
    git does not track yet are work in progress."""
    listed = subprocess.run(
        ["git", "ls-files", "attn6d_ros", "launch", "scripts/refine_node"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    paths = [REPO / name for name in listed]
    return [p for p in paths if p.is_file() and (p.suffix == ".py" or p.name == "refine_node")]


def _top_level_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _declared() -> set[str]:
    root = ET.parse(REPO / "package.xml").getroot()
    tags = ("depend", "exec_depend", "build_depend", "buildtool_depend", "test_depend")
    return {element.text.strip() for tag in tags for element in root.iter(tag)}


def _is_ros(module: str) -> bool:
    return module in ROS_MODULES or module.endswith(("_msgs", "_srvs", "_interfaces"))


def test_every_imported_package_is_declared_or_in_the_pip_requirements() -> None:
    declared = _declared()
    requirements = (REPO / "requirements" / "runtime.txt").read_text()
    lines = [line.strip() for line in requirements.splitlines()]
    required = {re.split(r"[<>=!~;\[ ]", line)[0].lower() for line in lines if line[:1].isalnum()}
    problems = []
    for path in _installed_sources():
        for module in sorted(_top_level_imports(path)):
            where = path.relative_to(REPO)
            if module in sys.stdlib_module_names or module in ("attn6d_ros", "__future__"):
                continue
            if _is_ros(module):
                package = ROS_PACKAGE_OF.get(module, module)
                if package not in declared:
                    problems.append(f"{where}: imports {module}; package.xml lacks {package}")
            elif module in ROSDEP_KEY_OF:
                if ROSDEP_KEY_OF[module] not in declared:
                    problems.append(
                        f"{where}: imports {module}; package.xml lacks {ROSDEP_KEY_OF[module]}"
                    )
            elif module in PIP_ONLY:
                if module != "torch" and PIP_ONLY[module] not in required:
                    problems.append(
                        f"{where}: imports {module}; requirements/runtime.txt lacks it"
                    )
            else:
                problems.append(
                    f"{where}: imports {module}: add it to package.xml or the pip list here"
                )
    assert not problems, "\n".join(problems)


def test_package_xml_names_no_key_without_a_jazzy_package() -> None:
    """rosdep install fails on a whole workspace for one key it cannot resolve."""
    declared = _declared()
    assert not declared & {"python3-torch", "python3-trimesh", "python3-moderngl"}, declared
