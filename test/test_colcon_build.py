"""The package builds with colcon in a workspace, as in a real ROS 2 install (sources, msgs, executable,
launch, config, models), and the installed copy imports and finds its share directory."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from colcon_workspace import sourced_environment

pytestmark = [pytest.mark.slow, pytest.mark.ros]


def test_colcon_build_and_installed_layout(colcon_install: Path, tmp_path: Path) -> None:
    install = colcon_install
    site = next(install.glob("lib/python3*/site-packages"))
    for path in (
        site / "attn6d_ros" / "refiner.py",
        site / "attn6d_ros" / "msg" / "_refinement_array.py",
        install / "lib" / "attn6d_ros" / "refine_node",
        install / "share" / "attn6d_ros" / "launch" / "refine.launch.py",
        install / "share" / "attn6d_ros" / "config" / "refine.yaml",
        install / "share" / "attn6d_ros" / "models" / "demo_object.ply",
        install / "share" / "ament_index" / "resource_index" / "packages" / "attn6d_ros",
    ):
        assert path.exists(), f"not installed: {path.relative_to(install)}"
    assert os.access(install / "lib" / "attn6d_ros" / "refine_node", os.X_OK)
    # What `source install/local_setup.bash` provides, read from a bash that sourced it.
    run_env = sourced_environment(install)
    assert str(install) in run_env["AMENT_PREFIX_PATH"].split(os.pathsep)
    code = (
        "import attn6d_ros, attn6d_ros.msg, attn6d_ros.refiner\n"
        "from attn6d_ros.paths import share_dir\n"
        "m = attn6d_ros.msg.RefinementArray()\n"
        "print(attn6d_ros.__version__, attn6d_ros.__file__, attn6d_ros.msg.__file__, share_dir())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=run_env, cwd=tmp_path, check=True,
                         capture_output=True, text=True).stdout  # fmt: skip
    version, init_file, msg_file, share = out.split()
    assert version == "0.1.0"  # our __init__.py, not rosidl's empty one
    assert init_file.startswith(str(site)) and msg_file.startswith(str(site))
    assert share == str(install / "share" / "attn6d_ros")
