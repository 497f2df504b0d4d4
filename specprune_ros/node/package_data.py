"""Where the package's data (config, launch, the shipped checkpoint) lives.

Installed (``colcon build``, plain or ``--symlink-install``), data files are in the package's
ament share directory (setup.py ``data_files``), found through ament_index_python. Run from
the source tree (this repository, no install), they are in the repository root. Deriving
them from ``__file__`` alone broke a plain ``colcon build``: the modules then live in
site-packages, far from the data (issue #13).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import List

PACKAGE = "specprune_ros"
SOURCE_ROOT = Path(__file__).resolve().parents[2]  # the repository root, when run from it
SHIPPED_CHECKPOINT = os.path.join("checkpoints", "pick_color")


def share_directory() -> Path:
    """The installed share directory, or the source tree when the package is not installed
    (no ament_index_python, AMENT_PREFIX_PATH unset, or the package not in it)."""
    try:
        from ament_index_python.packages import (PackageNotFoundError,
                                                 get_package_share_directory)
    except ImportError:
        return SOURCE_ROOT
    try:
        return Path(get_package_share_directory(PACKAGE))
    except (PackageNotFoundError, OSError):
        return SOURCE_ROOT


def data_roots() -> List[Path]:
    """Folders to look for package data in, installed share directory first."""
    roots = [share_directory(), SOURCE_ROOT]
    return [r for i, r in enumerate(roots) if r not in roots[:i]]


def data_path(relative: str) -> str:
    """``relative`` (e.g. "checkpoints/pick_color") under the first data root holding it;
    under the first root when none does (the caller reports the missing path)."""
    for root in data_roots():
        if (root / relative).exists():
            return str(root / relative)
    return str(data_roots()[0] / relative)


def shipped_checkpoint() -> str:
    """The trained pick_color policy shipped with the package."""
    return data_path(SHIPPED_CHECKPOINT)
