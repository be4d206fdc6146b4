"""Atomic file writes: a reader sees the old file or the new one, never a partial one."""

import contextlib
import csv
import json
import os
import uuid


@contextlib.contextmanager
def atomic_path(path):
    """Yields a fresh temporary path next to `path`, moved onto `path` if the block succeeds."""
    # Not tempfile.mkstemp: its 0600 mode would stick to the results files.
    tmp_path = os.path.join(
        os.path.dirname(os.path.abspath(path)),
        f".{os.path.basename(path)}.{os.getpid()}.{uuid.uuid4().hex}.tmp",
    )
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)


@contextlib.contextmanager
def open_atomic(path, mode="w", **kwargs):
    """`open(path, mode)` whose content replaces `path` only once the block succeeds."""
    with atomic_path(path) as tmp_path, open(tmp_path, mode, **kwargs) as f:
        yield f


def write_json(path, value):
    """Writes `value` as indented JSON, atomically (results and eval files)."""
    with open_atomic(path) as f:
        json.dump(value, f, indent=2)


def write_csv(path, rows, columns):
    """Writes dict rows under a header of `columns`, atomically."""
    with open_atomic(path, newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
