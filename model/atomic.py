"""Atomic file writes: a reader sees the old file or the new one, never a part of either.

One place for the temp-file-beside-the-target + os.replace dance (it must be the same directory, hence the same
filesystem, for the rename to be atomic). Torch-free: `db/` and the app use it too.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile


@contextlib.contextmanager
def atomic_path(path: str, suffix: str = ""):
    """Yield a temp path beside `path`; on success it replaces `path`, on any error it is removed.

    `suffix` keeps an extension for writers that infer the format from the name (PIL, np.savez)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp" + suffix)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o644)  # mkstemp makes it private; outputs are meant to be read by others
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str, data: bytes, fsync: bool = False) -> None:
    """`fsync=True` where the file must survive a power cut too (exports), not only a killed process."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        if fsync:
            fh.flush()
            os.fsync(fh.fileno())


def atomic_write_text(path: str, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str, obj, indent: int = 1) -> None:
    atomic_write_text(path, json.dumps(obj, indent=indent))
