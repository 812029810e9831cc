"""Where the package's shared files are (config/, models/, launch/), and `package://` path resolution."""

from __future__ import annotations

import os
import sys
from pathlib import Path

PACKAGE = "attn6d_ros"


def share_dir() -> Path:
    """The package's share directory: the source checkout, else the ament index, else the pip data dir."""
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "models").is_dir() and (checkout / "config").is_dir():
        return checkout
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory(PACKAGE))
    except (ImportError, LookupError, ValueError):
        pass
    candidate = Path(sys.prefix) / "share" / PACKAGE
    if candidate.is_dir():
        return candidate
    raise FileNotFoundError(f"cannot find the {PACKAGE} share directory (config/, models/)")


def resolve_path(path: str, *, relative_to: Path | None = None) -> str:
    """Resolves `package://attn6d_ros/<rel>` (our share directory), `~`, and paths relative to a file."""
    if path.startswith("package://"):
        package, _, rel = path[len("package://") :].partition("/")
        if package == PACKAGE:
            return str(share_dir() / rel)
        from ament_index_python.packages import get_package_share_directory

        return str(Path(get_package_share_directory(package)) / rel)
    expanded = os.path.expanduser(path)
    if relative_to is not None and not os.path.isabs(expanded):
        return str((relative_to / expanded).resolve())
    return expanded
