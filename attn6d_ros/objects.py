"""The object table: YAML mapping object ids to meshes, units and symmetry, and its loader.

Format (config/objects.yaml)::

    demo_object:                      # the detector's class id
      mesh: ../models/demo_object.ply # relative to this file; also absolute, ~, $VARS, package://pkg/path
                                      # (a variable holding a relative path: relative to the working dir)
      units: m                        # m | cm | mm (the unit of the file's coordinates)
      symmetric: false                # ADD-S and a symmetric loss when true
      method: auto                    # auto | network | align (optional; default auto)

`method` says what refines the object: `network` (the checkpoint's stages, then whatever the caller asks
for), `align` (the region-based alignment alone, with several starts: an object without trained weights),
or `auto`: `network` when the checkpoint was trained on the object or does not say which objects it was
trained on (its metadata), `align` when it lists others only. See `uses_network`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from attn6d_ros.mesh import UNIT_SCALE, ObjectModel, load_mesh
from attn6d_ros.paths import resolve_path

_KEYS = {"mesh", "units", "symmetric", "method"}
METHODS = ("auto", "network", "align")
_VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)\}")


@dataclass(frozen=True)
class ObjectSpec:
    """One row of the object table."""

    object_id: str
    mesh: Path
    units: str = "m"
    symmetric: bool = False
    method: str = "auto"

    def load(self) -> ObjectModel:
        return load_mesh(
            self.mesh, units=self.units, symmetric=self.symmetric, name=self.object_id
        )


def read_object_table(path: str | Path) -> dict[str, ObjectSpec]:
    """Reads and validates an object table; mesh paths are resolved (not yet loaded).

    Raises:
        FileNotFoundError: the table or a mesh file is missing.
        ValueError: bad YAML or a bad entry; the message names the entry and the field.
    """
    path = Path(resolve_path(str(path)))
    if not path.is_file():
        raise FileNotFoundError(f"object table not found: {path}")
    try:
        table = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"object table {path} is not valid YAML: {exc}") from exc
    if not isinstance(table, dict) or not table:
        raise ValueError(
            f"object table {path} must map object ids to entries, got {type(table).__name__}"
        )
    specs = {}
    for object_id, entry in table.items():
        where = f"{path}: objects.{object_id}"
        if not isinstance(entry, dict):
            raise ValueError(
                f"{where} must be a mapping with 'mesh', 'units', 'symmetric', 'method'"
            )
        unknown = set(entry) - _KEYS
        if unknown:
            raise ValueError(f"{where} has unknown keys {sorted(unknown)}; known: {sorted(_KEYS)}")
        if "mesh" not in entry:
            raise ValueError(f"{where}.mesh is missing")
        units = entry.get("units", "m")
        if units not in UNIT_SCALE:
            raise ValueError(f"{where}.units must be one of {tuple(UNIT_SCALE)}, got {units!r}")
        symmetric = entry.get("symmetric", False)
        if not isinstance(symmetric, bool):
            raise ValueError(f"{where}.symmetric must be true or false, got {symmetric!r}")
        method = entry.get("method", "auto")
        if method not in METHODS:
            raise ValueError(f"{where}.method must be one of {METHODS}, got {method!r}")
        mesh = Path(resolve_path(_expand_variables(str(entry["mesh"])), relative_to=path.parent))
        if not mesh.is_file():
            names = [_variable_name(m) for m in _VARIABLE.finditer(str(entry["mesh"]))]
            unset = [name for name in names if name not in os.environ]
            hint = f" (environment variable {', '.join(unset)} is not set)" if unset else ""
            raise FileNotFoundError(f"{where}.mesh: file not found: {mesh}{hint}")
        specs[str(object_id)] = ObjectSpec(str(object_id), mesh, units, symmetric, method)
    return specs


def uses_network(spec: ObjectSpec, trained_on: bool | None) -> bool:
    """Whether the network refines this object (else the alignment alone does; module docstring).

    Args:
        spec: the object's table row.
        trained_on: whether the checkpoint was trained on it (Refiner.trained_on); None when the checkpoint
            does not say.
    """
    if spec.method == "auto":
        return trained_on is not False
    return spec.method == "network"


def _expand_variables(text: str) -> str:
    """Expands $NAME and ${NAME} from the environment, a relative value taken from the working directory
    (where the user set it, as the shell would read it); unset variables stay as written."""

    def value(match: re.Match) -> str:
        name = _variable_name(match)
        if name not in os.environ:
            return match.group(0)
        return os.path.abspath(os.path.expanduser(os.environ[name]))

    return _VARIABLE.sub(value, text)


def _variable_name(match: re.Match) -> str:
    """NAME of a $NAME or ${NAME} match of _VARIABLE."""
    return match.group(1) or match.group(2)


def load_objects(path: str | Path, ids: list[str] | None = None) -> dict[str, ObjectModel]:
    """Loads the meshes of an object table (all ids, or `ids` in that order)."""
    specs = read_object_table(path)
    if ids:
        missing = [i for i in ids if i not in specs]
        if missing:
            raise ValueError(f"object ids {missing} are not in {path}; it has {sorted(specs)}")
        specs = {i: specs[i] for i in ids}
    return {object_id: spec.load() for object_id, spec in specs.items()}
