"""Writing a file so that a reader never sees half of it, and a failed write (a full disk) leaves nothing behind."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def write_atomically(path: str | os.PathLike[str], data: bytes | memoryview | Callable[[BinaryIO], object]) -> Path:
    """Write ``data`` to ``path``: folders created, a unique temporary file beside it written, synced, then moved into place.

    ``data`` is the bytes, or a function that writes them to the open binary file it is given
    (``lambda f: torch.save(obj, f)``), so a large object is streamed rather than held twice.
    A write that fails raises its OSError (ENOSPC on a full disk) and removes the temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            if callable(data):
                data(handle)
            else:
                handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
