"""Many jobs, one process (robust_transfer.runner), on real Snakemake runs of the workflow: the
demo's 82 fine-tuning runs trained in a handful of runner processes, with exactly the metrics
they have when each trains in a process of its own; run granularity kept (a deleted result
reruns that run only; changing `pack` reruns nothing); a job that fails inside a runner fails
with its message; edited code or another environment gets another runner. How the packs go
out on a cluster: tests/test_slurm.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from conftest import clone_results, job_counts

from robust_transfer import grid, plan, recipes, runner

DEMO = ["--workflow-profile", "profiles/demo"]


def _snakemake(root: Path, *args, check=True):
    cmd = [sys.executable, "-m", "snakemake", *DEMO, *map(str, args)]
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-4000:]}")
    return proc


def _process(root: Path, run: grid.Run) -> dict:
    return json.loads((root / f"{run.path}.json").read_text())["process"]


def _metrics(root: Path, run: grid.Run) -> pd.DataFrame:
    return pd.read_csv(root / f"{run.path}.csv").drop(columns="time")


@pytest.mark.slow
def test_the_demo_trains_its_runs_in_a_few_runner_processes(demo, demo_config):
    """Two cores, two training jobs at a time: two runners (a third only when one was busy
    leaving), each training dozens of runs one after another."""
    runs = grid.all_runs(demo_config)
    processes = [_process(demo.root, r) for r in runs]
    pids = Counter(p["pid"] for p in processes)
    assert len(runs) == 82 and len(pids) <= 4, pids
    assert max(p["runs_before"] for p in processes) >= 20
    logs = list((demo.root / "logs" / "runners").glob("*.log"))
    assert logs and all("listening" in f.read_text() for f in logs)


@pytest.mark.slow
def test_runs_in_a_runner_equal_runs_in_their_own_processes(demo, demo_config, tmp_path):
    """Table 2's four runs again, each in a process of its own (pack: {runs: 1}): the same
    metrics as the demo's, trained in runners after other runs."""
    root = clone_results(demo, tmp_path / "wf")
    runs = grid.figure_runs(demo_config, "table2")
    assert any(_process(demo.root, r)["runs_before"] > 0 for r in runs)
    targets = [f"{r.path}.csv" for r in runs]
    _snakemake(root, *targets, "--forcerun", *targets, "--config", "pack={runs: 1}")
    for run in runs:
        assert _process(root, run)["runs_before"] == 0  # a fresh process
        assert _process(root, run)["pid"] != _process(demo.root, run)["pid"]
        pd.testing.assert_frame_equal(_metrics(root, run), _metrics(demo.root, run))


@pytest.mark.slow
def test_a_deleted_result_reruns_that_run_only_and_pack_reruns_nothing(demo, demo_config, tmp_path):
    """Each run is its own job, packed or not: asking for a deleted run's result plans that run
    and nothing else; another `pack` plans nothing at all."""
    root = clone_results(demo, tmp_path / "wf")
    assert job_counts(_snakemake(root, "-n", "--config", "pack={runs: 1, idle: 5}").stdout) == {}
    runs = grid.figure_runs(demo_config, "table2")
    for ext in ("csv", "json"):
        (root / f"{runs[0].path}.{ext}").unlink()
    targets = [f"{r.path}.csv" for r in runs]
    assert job_counts(_snakemake(root, "-n", *targets).stdout) == {"finetune": 1}


@pytest.mark.slow
def test_a_job_that_fails_in_a_runner_fails_with_its_message(demo, demo_config, tmp_path):
    """A truncated source checkpoint: the job fails, Snakemake's output names the file, the
    whole traceback is in the job's log."""
    root = clone_results(demo, tmp_path / "wf")
    run = grid.figure_runs(demo_config, "table2")[0]
    source = root / "results" / "sources" / f"{run.source}.pt"
    source.write_bytes(source.read_bytes()[:100])
    os.utime(source, ns=(1, 1))  # older than the run: Snakemake replans nothing for it
    target = f"{run.path}.csv"
    proc = _snakemake(root, target, "--forcerun", target, check=False)
    assert proc.returncode != 0
    assert f"results/sources/{run.source}.pt: not a readable torch checkpoint" in proc.stdout + proc.stderr
    log = (root / "logs" / "finetune" / f"{run.path.removeprefix('results/runs/')}.log").read_text()
    assert "Traceback" in log and "not a readable torch checkpoint" in log


def test_edited_code_or_another_environment_gets_another_runner(tmp_path, monkeypatch):
    """A runner holds the package as it was imported: an edited module, another folder, another
    CUDA_VISIBLE_DEVICES or the other pool must not reach it."""
    package = tmp_path / "robust_transfer"
    package.mkdir()
    for f in runner.PACKAGE.glob("*.py"):
        (package / f.name).write_bytes(f.read_bytes())
    monkeypatch.setattr(runner, "PACKAGE", package)
    monkeypatch.chdir(tmp_path)
    first = runner.key("train")
    assert runner.key("train") == first and runner.key("light") != first
    os.utime(package / "train.py", ns=(1, 1))
    edited = runner.key("train")
    assert edited != first
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert runner.key("train") != edited
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    (tmp_path / "other").mkdir()
    monkeypatch.chdir(tmp_path / "other")
    assert runner.key("train") != edited


def test_pack_is_no_setting_of_any_run(demo_config):
    """`pack` changes where jobs execute, never a number: no run's settings (Snakemake's
    params) hold it, so changing it reruns nothing."""
    settings = recipes.run_settings(demo_config, "digits", "natural", "20")
    other = json.loads(json.dumps(demo_config))
    other["pack"] = {"runs": 1, "idle": 1, "cluster_hours": 0.1}
    assert recipes.run_settings(other, "digits", "natural", "20") == settings
    assert "pack" not in json.dumps(settings)


def test_cluster_packs_fill_their_hours_by_dataset(paper_config):
    """Fig 5c's 972 runs go out in 217 submissions; every pack holds runs of one dataset whose
    time limits (plan.time_limit) add up to at most cluster_hours (a longer run alone)."""
    runs = grid.figure_runs(paper_config, "fig5c")
    packs = grid.cluster_packs(paper_config, runs)
    assert set(packs) == {r.path for r in runs} and len(runs) == 972
    assert len(set(packs.values())) <= len(runs) // 4
    budget = paper_config["pack"]["cluster_hours"] * 60
    minutes: Counter = Counter()
    for run in runs:
        assert packs[run.path].startswith(f"finetune-{run.dataset}-")
        minutes[packs[run.path]] += plan.time_limit(paper_config, run)
    sizes = Counter(packs.values())
    assert all(m <= budget for p, m in minutes.items() if sizes[p] > 1)
    assert len(set(grid.cluster_packs(paper_config, runs[:10]).values())) == 1  # a few runs: one pack
