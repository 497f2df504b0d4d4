"""A checkpoint folder's content hash and the checkpoint error type: no torch, so a light
process (specprune-record on the robot's computer) can name the model it recorded."""
from __future__ import annotations

import hashlib
import os


class CheckpointError(ValueError):
    """A checkpoint folder is incomplete or does not match the architecture."""


def checkpoint_hash(folder: str) -> str:
    """``'sha256:<hex>'`` over a checkpoint folder's content: every file below ``folder``
    (hidden files and folders such as a hub download's ``.cache`` left out), in sorted
    order of its '/'-separated path relative to ``folder``, as its path, its size and its
    bytes. Any changed, added, removed or renamed file changes it. Result JSONs record it
    because a folder's name does not say which model it held (``checkpoints/pick_color``
    held two policies). CheckpointError when ``folder`` is not a folder."""
    if not os.path.isdir(folder):
        raise CheckpointError(f"{folder}: not a checkpoint folder")
    files = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        files += [os.path.join(root, n) for n in names if not n.startswith(".")]
    digest = hashlib.sha256()
    for path in sorted(files, key=lambda p: os.path.relpath(p, folder).split(os.sep)):
        relative = "/".join(os.path.relpath(path, folder).split(os.sep))
        digest.update(f"{relative}\0{os.path.getsize(path)}\0".encode())
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return f"sha256:{digest.hexdigest()}"
