"""/out/monitor.txt: progress while running, the error code and a message on failure."""

from __future__ import annotations

import time

from executor.protocol.errors import ErrorCode
from executor.protocol.files import atomic_write_text


class Monitor:
    """Writes /out/monitor.txt; ``span`` maps a sub-task's [0, 1] into the shared bar."""

    RUNNING = 2
    ERROR = 4

    def __init__(self, path: str, task_id: str, span: tuple[float, float] = (0.0, 1.0),
                 _high: list[float] | None = None) -> None:
        self.path = path
        self.task_id = task_id
        self.span = span
        self._last = -1.0
        self._last_time = 0.0
        self._high = _high if _high is not None else [0.0]  # shared with sub-monitors: the bar's high-water mark

    def sub(self, start: float, end: float) -> Monitor:
        lo, hi = self.span
        return Monitor(self.path, self.task_id, (lo + (hi - lo) * start, lo + (hi - lo) * end), self._high)

    def progress(self, fraction: float, force: bool = False) -> None:
        """Never moves backwards: Ultralytics re-runs an epoch after a NaN recovery or an out-of-memory
        retry, and the bar then holds where it was until the run passes that point again."""
        lo, hi = self.span
        percent = max(lo + (hi - lo) * min(max(float(fraction), 0.0), 1.0), self._high[0])
        self._high[0] = percent
        now = time.time()
        # Throttle: at most one write per percent step or per second.
        if not force and percent - self._last < 0.01 and now - self._last_time < 1.0:
            return
        self._last, self._last_time = percent, now
        atomic_write_text(self.path, f"{self.task_id}\t{int(now)}\t{percent:.2f}\t{self.RUNNING}\n")

    def error(self, code: ErrorCode, message: str) -> None:
        atomic_write_text(
            self.path,
            f"{self.task_id}\t{int(time.time())}\t1.00\t{self.ERROR}\t{int(code)}\n{message}\n",
        )
