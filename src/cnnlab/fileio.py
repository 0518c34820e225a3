"""Files written whole or not at all: everything cnnlab writes for the user (JSON results,
figures, checkpoints, reports) goes to a temporary name in the same folder, is flushed to disk and
renamed over the target, so a crash or a second run at the same time never leaves a half-written
file, and the previous version stays readable until the new one is complete."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator, Sequence

__all__ = ["atomic_path", "atomic_write_text", "install_files", "save_figure", "staging_folder"]


def _new_file_mode() -> int:
    """The mode ``open()`` gives a new file: 0666 less the process's umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_NEW_FILE_MODE = _new_file_mode()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without an exception the file
    written there is fsynced and renamed to ``path`` (its folder created first). On an exception
    the temporary file is removed and ``path`` is untouched."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, _NEW_FILE_MODE)  # mkstemp's 0600 would make a report unreadable to a web server
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically (see ``atomic_path``)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def save_figure(fig: Any, base: str | os.PathLike[str], formats: tuple[str, ...] = ("png", "svg")) -> list[Path]:
    """Save a matplotlib figure as ``base.png`` and ``base.svg`` (atomically), close it, and
    return the paths."""
    import matplotlib.pyplot as plt

    paths = []
    try:
        for fmt in formats:
            path = Path(f"{base}.{fmt}")
            with atomic_path(path) as tmp:
                fig.savefig(tmp, format=fmt, dpi=120, bbox_inches="tight")
            paths.append(path)
    finally:
        plt.close(fig)
    return paths


@contextlib.contextmanager
def staging_folder(target: Path) -> Iterator[Path]:
    """A temporary folder beside ``target`` (same file system, so moving out is a rename), removed
    at the end whatever happens."""
    folder = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def install_files(staged: Sequence[Path], final: Sequence[Path]) -> None:
    """Move each staged file over its final name, companions (``.bin``) before the main file."""
    for source, target in reversed(list(zip(staged, final))):
        with atomic_path(target) as tmp:
            os.replace(source, tmp)
