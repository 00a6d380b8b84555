"""Atomic writes: the platform stops a task with SIGKILL, so a result file is either absent, old or complete."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


class AtomicFile:
    """A temp file beside ``path``, renamed over ``path`` by ``commit`` and removed by ``discard``."""

    def __init__(self, path: str | os.PathLike, mode: str = "w") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self.tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        self.fp: IO[Any] = os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8")

    def commit(self) -> None:
        self.fp.flush()
        os.fsync(self.fp.fileno())
        self.fp.close()
        os.chmod(self.tmp, 0o644)
        os.replace(self.tmp, self.path)

    def discard(self) -> None:
        self.fp.close()
        try:
            os.unlink(self.tmp)
        except FileNotFoundError:
            pass


@contextmanager
def atomic_writer(path: str | os.PathLike, mode: str = "w") -> Iterator[IO[Any]]:
    """Yield a temp file beside ``path``; rename it over ``path`` only on success."""
    target = AtomicFile(path, mode)
    try:
        yield target.fp
    except BaseException:
        target.discard()
        raise
    target.commit()


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_writer(path) as fp:
        fp.write(text)


def atomic_copy(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Copy a file so that ``dst`` is always either absent, old or complete."""
    with open(src, "rb") as fin, atomic_writer(dst, "wb") as fout:
        while chunk := fin.read(1 << 20):
            fout.write(chunk)
