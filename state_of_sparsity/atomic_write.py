"""Atomic file writes: a reader sees the old file or the new one, never a partial one."""

import contextlib
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
