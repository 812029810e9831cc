"""Reads a ROS 2 parameters file (config/refine.yaml) into params.NodeConfig, without ROS.

The file is the one the node takes (``--ros-args --params-file FILE``): sections ``/**``, ``attn6d_refiner``
or ``<namespace>/attn6d_refiner`` with ``ros__parameters``, nested keys joined by dots (``sync: slop:`` is
``sync.slop``). As in ROS, the node's own section overrides the wildcard, and a section for another node name
is ignored. Values pass the node's checks (params.check_value); like ROS, a whole number where a double is
expected is refused (write 1.0). Unknown names are returned so the caller can warn, as the node does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from attn6d_ros.ros.params import (
    NODE_NAME,
    ROS_OWN_PARAMETERS,
    NodeConfig,
    ParameterError,
    parameter_fields,
)


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _is_our_section(key: str) -> bool:
    name = key.strip("/").rsplit("/", 1)[-1]
    return name == NODE_NAME


def read_params_file(path: str | Path) -> tuple[NodeConfig, list[str]]:
    """(the node's configuration from a parameters file, unknown parameter names it ignored).

    Raises:
        FileNotFoundError: no such file.
        ParameterError: not a ROS 2 parameters file, or a value the node would refuse (names it).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"parameters file {str(path)!r} not found")
    try:
        tree = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ParameterError(
            "params_file", f"parameters file {str(path)!r} is not YAML: {exc}"
        ) from exc
    sections = []
    if isinstance(tree, dict):
        wildcard = [k for k in tree if str(k) == "/**"]
        own = [k for k in tree if str(k) != "/**" and _is_our_section(str(k))]
        sections = [tree[k] for k in wildcard + own]
    if not sections or not all(
        isinstance(s, dict) and isinstance(s.get("ros__parameters"), dict) for s in sections
    ):
        raise ParameterError(
            "params_file",
            f"parameters file {str(path)!r} has no '/**' or '{NODE_NAME}' section with "
            "'ros__parameters' (see config/refine.yaml)",
        )
    values: dict[str, Any] = {}
    for section in sections:
        values.update(_flatten(section["ros__parameters"]))
    known = parameter_fields()
    unknown = sorted(n for n in values if n not in known and not n.startswith(ROS_OWN_PARAMETERS))
    ours = {name: value for name, value in values.items() if name in known}
    for name, value in ours.items():
        default = known[name].default
        if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            raise ParameterError(
                name,
                f"parameter {name!r} must be a float, got {value!r} (int) (write a decimal point, "
                f"e.g. {float(value)}) in {str(path)!r}",
            )
    return NodeConfig.from_parameters(ours), unknown
