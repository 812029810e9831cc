"""The ROS 2 upstream packages (../shared/upstream) in this venv: which `make setup` installed, for the tests
that run the node against them (skip where none were installed, fail where one was but does not work).

scripts/install_upstream.sh records what it installed in `<venv>/.attn6d-upstream` (JSON: source,
installed, skipped with the reason).
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
from conftest import REPO

RECORD = Path(sys.prefix) / ".attn6d-upstream"
UPSTREAM_DIR = REPO.parent / "shared" / "upstream"
# The import name of each installed package the tests use.
MODULES = {
    "launch": "launch",
    "launch_ros": "launch_ros",
    "ros2launch": "ros2launch",
    "message_filters": "message_filters",
    "tf2_ros_py": "tf2_ros",
    "tf2_py": "tf2_py",
    "cv_bridge": "cv_bridge",
}


def installed() -> dict:
    """The record of scripts/install_upstream.sh, or {} where it did not run for this venv."""
    return json.loads(RECORD.read_text()) if RECORD.is_file() else {}


def require(package: str) -> ModuleType:
    """Imports the upstream `package` (a name in MODULES) for the calling test.

    Skips the test where `make setup` installed no upstream packages into this venv (a user's clone, without
    ../shared/upstream) or where it skipped this one (cv_bridge without OpenCV/Boost.Python: the reason).
    Fails where the package was installed but does not import: that is a broken setup, not a missing one.
    """
    record = installed()
    if not record:
        where = (
            f"{UPSTREAM_DIR} not found"
            if not UPSTREAM_DIR.is_dir()
            else "this venv was set up without them: make setup UPSTREAM= or an older setup"
        )
        pytest.skip(
            f"upstream ROS 2 package {package} not installed in this venv ({where}; a user's clone has no "
            "../shared/upstream): `make setup` installs launch, message_filters, tf2_ros and cv_bridge "
            "from there, as CI does"
        )
    if package in record.get("skipped", {}):
        pytest.skip(record["skipped"][package])
    if package not in record.get("installed", []):
        pytest.fail(f"{package} is missing from {RECORD}: {record}")
    try:
        return importlib.import_module(MODULES[package])
    except ImportError as exc:
        pytest.fail(f"upstream {package} was installed (see {RECORD}) but does not import: {exc}")
