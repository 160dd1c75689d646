"""Cache files written whole or not at all, however many processes write them at once."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def write_atomically(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write `path` through a private temporary file in its folder, then rename it into place.

    A reader sees the old file or the whole new one, never a part; two writers (processes or
    threads) each use their own temporary file, and the last rename wins. The temporary file is
    removed when writing fails.

    Args:
        path: The file to write (its folder must exist).
        write: Writes the content to the open binary file it is given.

    Raises:
        OSError: The folder cannot be written.
    """
    partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with partial.open("wb") as file:
            write(file)
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        raise
