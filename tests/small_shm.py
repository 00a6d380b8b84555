"""A command under a small /dev/shm: a tmpfs in a mount namespace of its own (needs root and ``unshare -m``),
for the tests and ``make gpu-check`` that run the executor as Docker's default of 64 MB leaves it."""

from __future__ import annotations


def under_small_shm(command: list[str], size: str = "1m") -> list[str]:
    """``command`` in a mount namespace whose /dev/shm is a tmpfs of ``size``."""
    return ["unshare", "-m", "sh", "-c", f'mount -t tmpfs -o size={size} tmpfs /dev/shm && exec "$@"', "sh", *command]
