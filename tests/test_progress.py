"""Grid progress on a terminal: runs done and the time left while Snakemake works; nothing when
the output is not a terminal. A real rebuild of two demo runs, once on a pseudo-terminal, once
through pipes."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import time

import pytest
from conftest import SNAKEMAKE, clone_results

from robust_transfer import grid, progress

RUNS = [grid.Run("digits", "natural", 3, "20", s) for s in (20000000, 20100000)]


def rebuild(root, terminal: bool) -> str:
    for run in RUNS:
        for ext in (".csv", ".json"):
            (root / f"{run.path}{ext}").unlink()
    cmd = [*SNAKEMAKE, "--workflow-profile", "profiles/demo", *(f"{r.path}.json" for r in RUNS)]
    if not terminal:
        proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout + proc.stderr
    leader, follower = pty.openpty()
    proc = subprocess.Popen(cmd, cwd=root, stdout=follower, stderr=follower, stdin=subprocess.DEVNULL)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # the terminal closed: Snakemake has exited
            break
        if not data:
            break
        chunks.append(data)
    assert proc.wait() == 0, b"".join(chunks)[-3000:]
    os.close(leader)
    return b"".join(chunks).decode(errors="replace")


@pytest.mark.slow
def test_a_terminal_shows_grid_progress_and_a_pipe_does_not(demo, tmp_path):
    root = clone_results(demo, tmp_path / "progress")
    shown = re.sub(r"\x1b\[[0-9;]*m", "", rebuild(root, terminal=True))  # without the terminal's colours
    lines = re.findall(r"\[grid\] (\d+)/(\d+) fine-tuning runs done \(\d+ %\), \S+ elapsed, (.*)", shown)
    assert lines, shown[-3000:]
    assert lines[0][:2] == ("0", "2") and "known after the first run ends" in lines[0][2]
    assert lines[-1][:2] == ("2", "2") and lines[-1][2].strip() == "about 0m00s left"
    quiet = rebuild(root, terminal=False)
    assert "[grid]" not in quiet
    assert "Cost of this invocation" in quiet  # the summary is printed either way


def test_time_left_scales_the_plan_by_the_runs_done():
    planned = {"a": 10.0, "b": 10.0, "c": 20.0}
    assert progress.time_left(planned, set(), 5.0) is None
    assert progress.time_left(planned, {"a"}, 5.0) == 15.0  # 0.5 wall s per planned s, 30 left
    assert progress.time_left(planned, {"a", "b", "c"}, 9.0) == 0.0
    assert progress.clock(3725) == "1h02m" and progress.clock(65.4) == "1m05s"
    assert progress.line(1, 4, 60, 180) == "[grid] 1/4 fine-tuning runs done (25 %), 1m00s elapsed, about 3m00s left"


def test_the_last_line_is_shown_when_snakemake_is_done(tmp_path):
    """Snakemake may exit between two polls: its onsuccess hook (`finish`) prints the last line."""
    planned = {str(tmp_path / f"{i}.json"): 10.0 for i in range(2)}
    lines = []
    watch = progress.Watch(planned, lines.append, poll=3600)  # never polls again by itself
    watch.start()
    while not lines:  # its first line, before any run has ended
        time.sleep(0.01)
    for path in planned:
        (tmp_path / path).write_text("{}")
    watch.finish()
    assert lines[0].startswith("[grid] 0/2") and lines[-1].startswith("[grid] 2/2") and len(lines) == 2
    watch.finish()  # a second call (onerror after onsuccess) adds nothing
    assert len(lines) == 2
