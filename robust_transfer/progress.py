"""Grid progress on the terminal: runs done, and the time left, while Snakemake works.

Snakemake prints a line per finished job; with thousands of runs what a user wants is how far
along the grid is and when it ends. `Watch` is started once per invocation (rules/common.smk,
`onstart`), only when the terminal is a terminal (a pipe, a log file or a cluster job stays
quiet). It polls the planned runs' metadata files, which a run writes last, and prints a line
when a run has ended or a minute has passed. Time left is the plan's device-seconds of the runs
still to do, scaled by how long the finished ones really took (wall time, with however many run
at once) against what the plan said.

Pure Python: no torch.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path


def clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def line(done: int, total: int, elapsed: float, left: float | None) -> str:
    share = 100 * done / total if total else 100
    when = f"about {clock(left)} left" if left is not None else "time left: known after the first run ends"
    return f"[grid] {done}/{total} fine-tuning runs done ({share:.0f} %), {clock(elapsed)} elapsed, {when}"


def time_left(planned: dict[str, float], finished: set[str], elapsed: float) -> float | None:
    """Wall seconds left: the plan's seconds of the unfinished runs, times the finished runs'
    wall-per-planned ratio. None before any run has finished."""
    done = sum(planned[p] for p in finished)
    if done <= 0:
        return None
    return elapsed / done * sum(s for p, s in planned.items() if p not in finished)


class Watch(threading.Thread):
    """Reports grid progress through `emit` (Snakemake's logger: it keeps lines whole beside its
    own) until every planned run exists, `finish` is called or the process ends."""

    def __init__(self, planned: dict[str, float], emit, every: float = 60.0, poll: float = 2.0):
        super().__init__(daemon=True, name="grid-progress")
        self.planned = planned  # a run's metadata file -> its planned device-seconds
        self.emit = emit
        self.every = every
        self.poll = poll
        self.start_time = time.monotonic()
        self.stopped = threading.Event()
        self.lock = threading.Lock()
        self.shown = -1  # runs done at the last line
        self.last = 0.0  # when it was shown

    def finished(self) -> set[str]:
        return {p for p in self.planned if Path(p).exists()}

    def report(self, force: bool = False) -> int:
        """Emit a line if a run has ended since the last one, a minute has passed, or `force`."""
        with self.lock:
            finished = self.finished()
            now = time.monotonic()
            if force or len(finished) != self.shown or now - self.last >= self.every:
                elapsed = now - self.start_time
                left = time_left(self.planned, finished, elapsed)
                self.emit(line(len(finished), len(self.planned), elapsed, left))
                self.shown, self.last = len(finished), now
            return len(finished)

    def run(self) -> None:
        while not self.stopped.is_set():
            if self.report() == len(self.planned):
                return
            self.stopped.wait(self.poll)

    def finish(self) -> None:
        """The last line, when Snakemake is done (its onsuccess/onerror): the process may end
        before the thread's next poll."""
        self.stopped.set()
        self.join(timeout=self.poll + 1)
        if len(self.finished()) != self.shown:
            self.report(force=True)
