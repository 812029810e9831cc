"""rosbag2 reading and writing (sqlite3 and MCAP storage) with the pure-Python `rosbags`; no ROS needed.

`message_typestore` builds the message types a bag needs: ROS 2 Jazzy's standard messages (rosbags' own
store), then every definition the bag carries (rosbag2 stores them since Iron; they describe its bytes
exactly), then attn6d_ros's own msg/ (Refinement, RefinementArray), then any type still missing (e.g.
vision_msgs in a bag without definitions) from the ``share/<package>/msg`` folders of an installed ROS
(AMENT_PREFIX_PATH) or of this Python environment. A type found nowhere is an error naming it.

`open_reader` and `create_writer` wrap rosbags' Reader and Writer with errors that say what is wrong with
which path (`BagError`). `topic_types` lists a bag's topics and types for error messages.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.base import Nodetype

from attn6d_ros.paths import PACKAGE, share_dir

BASE_STORE = Stores.ROS2_JAZZY  # the standard messages; a bag's own definitions take precedence
STORAGES = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}
OWN_TYPES = ("Refinement", "RefinementArray")  # msg/*.msg, registered as attn6d_ros/msg/<name>


class BagError(RuntimeError):
    """A bag that cannot be read or written as asked; the message names the path and the problem."""


def _field_types(desc: tuple) -> list[str]:
    kind, value = desc
    if kind == Nodetype.NAME:
        return [value]
    if kind in (Nodetype.ARRAY, Nodetype.SEQUENCE):
        return _field_types(value[0])
    return []


def _missing_types(typs: dict, needed: list[str]) -> list[str]:
    """Types referenced from `needed` (recursively) that `typs` has no definition of."""
    missing, seen, todo = [], set(), list(needed)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if name not in typs:
            missing.append(name)
            continue
        for _, desc in typs[name][1]:
            todo.extend(_field_types(desc))
    return sorted(missing)


def _share_dirs() -> list[Path]:
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    prefixes.append(sys.prefix)
    return [Path(p) / "share" for p in prefixes]


def _own_msg_dir() -> Path:
    return share_dir() / "msg"


def _definition_file(msgtype: str) -> Path | None:
    package, _, name = msgtype.split("/")
    candidates = [d / package / "msg" / f"{name}.msg" for d in _share_dirs()]
    if package == PACKAGE:
        candidates.insert(0, _own_msg_dir() / f"{name}.msg")
    return next((c for c in candidates if c.is_file()), None)


def message_typestore(connections: list[Any], needed: list[str]) -> Any:
    """A rosbags typestore with the bag's types and our outputs' (module docstring).

    Args:
        connections: the input bag's rosbags Connections (their embedded definitions are used).
        needed: message types that must be complete (with every type they reference).

    Raises:
        BagError: a needed type (or one it references) is defined nowhere; names it and where it looked.
    """
    typs = dict(get_typestore(BASE_STORE).fielddefs)
    for connection in connections:
        msgdef = connection.msgdef
        if msgdef is not None and msgdef.data and msgdef.format.name == "MSG":
            typs.update(get_types_from_msg(msgdef.data, connection.msgtype))
    for name in OWN_TYPES:
        path = _definition_file(f"{PACKAGE}/msg/{name}")
        if path is not None:
            typs.update(get_types_from_msg(path.read_text(), f"{PACKAGE}/msg/{name}"))
    missing = _missing_types(typs, needed)
    while missing:
        found = {m: _definition_file(m) for m in missing}
        if not all(found.values()):
            absent = [m for m, path in found.items() if path is None]
            raise BagError(
                f"no definition of the message type(s) {absent}: the bag does not carry it (recorded "
                f"before ROS 2 Iron?) and no share/<package>/msg/ folder has it (searched "
                f"{[str(d) for d in _share_dirs()]}); source a ROS installation that has the package"
            )
        for name, path in found.items():
            typs.update(get_types_from_msg(path.read_text(), name))
        missing = _missing_types(typs, needed)
    typestore = get_typestore(Stores.EMPTY)
    typestore.register(typs)
    return typestore


def open_reader(path: Path) -> Reader:
    """Opens a rosbag2 (a folder with metadata.yaml, or a bare .db3 / .mcap file) for reading.

    Raises:
        BagError: missing path, unknown storage, or metadata or storage that cannot be read.
    """
    if not path.exists():
        raise BagError(f"input bag {str(path)!r} does not exist")
    target = path
    if path.is_dir() and not (path / "metadata.yaml").is_file():
        # A recording that was killed leaves its storage file without metadata.yaml: read the file itself.
        files = sorted(f for f in path.iterdir() if f.suffix in (".db3", ".mcap"))
        if len(files) != 1:
            raise BagError(
                f"input bag {str(path)!r} has no metadata.yaml and {len(files)} storage files "
                f"({[f.name for f in files]}); `ros2 bag reindex` rebuilds the metadata"
            )
        target = files[0]
    try:
        reader = Reader(target)
        reader.open()
    except FileNotFoundError as exc:
        raise BagError(f"input bag {str(path)!r} cannot be read: {exc}") from exc
    except Exception as exc:  # rosbags raises ReaderError, sqlite/apsw or MCAP parsing errors
        hint = "is it a rosbag2 folder (metadata.yaml with .db3 or .mcap files) or a .db3 / .mcap file?"
        if "end magic" in str(exc) or "footer" in str(exc):
            hint = "the MCAP file ends early (recording interrupted?); `mcap recover` repairs it"
        elif "malformed" in str(exc):
            hint = "the database file is damaged or truncated"
        raise BagError(
            f"input bag {str(path)!r} cannot be opened ({type(exc).__name__}: {exc}): {hint}"
        ) from exc
    return reader


def storage_of(reader: Reader) -> str:
    """'sqlite3' or 'mcap': the input bag's storage."""
    path = Path(reader.path)
    files = [path] if path.is_file() else sorted(path.iterdir())
    return "mcap" if any(f.suffix == ".mcap" for f in files) else "sqlite3"


def topic_types(reader: Reader) -> dict[str, str]:
    """{topic: message type} of a bag, sorted by topic."""
    return {topic: info.msgtype or "?" for topic, info in sorted(reader.topics.items())}


def describe_topics(reader: Reader) -> str:
    """The bag's topics and types, one per line, for error messages."""
    return "\n".join(f"  {topic} ({msgtype})" for topic, msgtype in topic_types(reader).items())


def create_writer(path: Path, storage: str, *, overwrite: bool) -> Writer:
    """Creates and opens a rosbag2 writer at `path` (a folder), storage 'sqlite3' or 'mcap'.

    Raises:
        BagError: `path` exists and `overwrite` is False, or the bag cannot be created.
    """
    if storage not in STORAGES:
        raise BagError(f"storage must be one of {sorted(STORAGES)}, got {storage!r}")
    if path.exists() or path.is_symlink():
        if not overwrite:
            raise BagError(f"output {str(path)!r} exists; pass --overwrite to replace it")
        if path.is_dir() and not path.is_symlink():
            import shutil

            shutil.rmtree(path)
        else:
            path.unlink()
    writer = Writer(path, version=9, storage_plugin=STORAGES[storage])
    try:
        writer.open()
    except Exception as exc:
        raise BagError(f"output bag {str(path)!r} cannot be created: {exc}") from exc
    return writer
