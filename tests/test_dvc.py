"""DVC versions what Snakemake builds (docs/dvc.md), round trip on the README's demo: the finished
demo has DVC's metrics and plots, is adopted by `dvc repro` (no training), pushed to a local
directory remote, and a fresh clone that runs `dvc pull` has every figure and plans nothing: no
DVC stage, no Snakemake job (no fine-tuning run in particular), although its inputs are newer
than the runs made from them. Offline; reuses the session's demo instead of running it again."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from conftest import REPO, clone_results, copy_workflow, job_counts
from snakemake.utils import update_config

from robust_transfer import grid

# What a checkout of the repository holds for DVC, besides the workflow (.dvc/cache and .dvc/tmp
# are DVC's own and never copied).
DVC_FILES = ["dvc.yaml", "params.yaml", ".dvcignore", ".gitignore", ".dvc/config", ".dvc/.gitignore", ".dvc/plots"]
STAGES = ["data", "runs", "figures"]


def tool_env(tmp: Path) -> dict:
    """Offline, quiet DVC and git; dvc.yaml's commands call `snakemake`: this interpreter's, as
    after `. .venv/bin/activate`."""
    return dict(
        os.environ,
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        DVC_NO_ANALYTICS="1",
        DVC_SITE_CACHE_DIR=str(tmp / "dvc-site-cache"),
        GIT_AUTHOR_NAME="test",
        GIT_AUTHOR_EMAIL="test@example.org",
        GIT_COMMITTER_NAME="test",
        GIT_COMMITTER_EMAIL="test@example.org",
    )


def copy_dvc_files(dest: Path) -> None:
    for item in DVC_FILES:
        (dest / item).parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if (REPO / item).is_dir() else shutil.copy2)(REPO / item, dest / item)


def sh(cwd: Path, *cmd: str, env: dict) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        output = f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        raise AssertionError(f"{shlex.join(cmd)} failed ({proc.returncode}):\n{output}")
    return proc.stdout + proc.stderr


def dvc(cwd: Path, *args: str, env: dict) -> str:
    return sh(cwd, sys.executable, "-m", "dvc", *args, env=env)


def git(cwd: Path, *args: str, env: dict) -> str:
    return sh(cwd, "git", *args, env=env)


def snakemake_dry(cwd: Path, *targets: str, env: dict) -> str:
    """A dry run as a user types it, with the demo's profile."""
    return sh(cwd, sys.executable, "-m", "snakemake", "-n", "--workflow-profile", "profiles/demo", *targets, env=env)


def ran_rules(output: str) -> set[str]:
    """The rules of the jobs a Snakemake run executed."""
    return set(re.findall(r"^(?:local)?rule (\w+):$", output, flags=re.MULTILINE))


def merged_config(root: Path) -> dict:
    """config.yaml with the demo's overlay, as Snakemake merges them."""
    config = yaml.safe_load((root / "config.yaml").read_text())
    update_config(config, yaml.safe_load((root / "config.demo.yaml").read_text()))
    return config


def files(root: Path, *dirs: str) -> dict[str, bytes]:
    paths = (p for d in dirs for p in sorted((root / d).rglob("*")) if p.is_file())
    return {str(p.relative_to(root)): p.read_bytes() for p in paths}


def numbers(metrics_json: str) -> dict[str, dict]:
    """`dvc metrics show --json` of the workspace: metrics file -> its numbers; a file DVC could
    not read fails here, with DVC's error."""
    files = json.loads(metrics_json)[""]["data"]
    errors = {path: entry["error"] for path, entry in files.items() if "error" in entry}
    assert not errors, errors
    return {path: entry["data"] for path, entry in files.items()}


def expected_numbers(root: Path) -> dict[str, dict]:
    """What `dvc metrics show` must print: every figure of the demo's `all` with its headline
    numbers as figure_metrics wrote them (DVC leaves out a line without a value, null)."""
    out = {}
    for fig in grid.in_all(merged_config(root)):
        written = json.loads((root / "results" / "metrics" / f"{fig}.json").read_text())
        out[f"results/metrics/{fig}.json"] = {line: v for line, v in written.items() if v is not None}
    return out


@dataclass
class Trip:
    origin: Path  # the finished demo in a git repository, adopted by `dvc repro` and pushed
    clone: Path  # a fresh `git clone` of it, then `dvc pull`
    env: dict
    demo_metrics: str  # `dvc metrics show` right after the demo, before DVC ran anything
    demo_json: str  # `dvc metrics show --json` likewise
    demo_plots: str  # `dvc plots show` likewise
    adopted: str  # the output of `dvc repro` adopting the demo
    before_pull: str  # `dvc status` in the clone before `dvc pull`


@pytest.fixture(scope="module")
def trip(demo, tmp_path_factory) -> Trip:
    """origin: the finished demo in a git repository, adopted by `dvc repro` with the documented
    switch (params.yaml: profile: demo) and pushed; clone: a fresh `git clone` + `dvc pull`."""
    tmp = tmp_path_factory.mktemp("dvc")
    env = tool_env(tmp)
    start = time.time()
    origin = clone_results(demo, tmp / "origin")
    copy_dvc_files(origin)
    params = origin / "params.yaml"
    params.write_text(re.sub(r"(?m)^profile: default$", "profile: demo", params.read_text()))
    assert yaml.safe_load(params.read_text())["profile"] == "demo"
    git(origin, "init", "-q", "-b", "main", env=env)
    git(origin, "add", "-A", env=env)
    git(origin, "commit", "-qm", "workflow", env=env)
    demo_metrics = dvc(origin, "metrics", "show", env=env)
    demo_json = dvc(origin, "metrics", "show", "--json", env=env)
    demo_plots = dvc(origin, "plots", "show", "-o", str(tmp / "demo-plots"), env=env)

    adopted = dvc(origin, "repro", env=env)
    git(origin, "add", "-A", env=env)
    git(origin, "commit", "-qm", "the demo's results, versioned by DVC", env=env)
    dvc(origin, "remote", "add", "-d", "local", str(tmp / "remote"), env=env)
    git(origin, "commit", "-qam", "a local remote", env=env)
    dvc(origin, "push", env=env)

    clone = tmp / "clone"
    git(tmp, "clone", "-q", str(origin), str(clone), env=env)
    before_pull = dvc(clone, "status", env=env)
    dvc(clone, "pull", env=env)
    # `dvc pull` writes files in no particular order; make it the worst one for Snakemake's time
    # comparison: every prepared dataset, source and subset newer than every run made from it.
    for folder in ("results/data", "results/sources", "results/subsets"):
        for path in (clone / folder).rglob("*"):
            os.utime(path)
    seconds = time.time() - start
    print(f"dvc round trip (adopt, push, clone, pull): {seconds:.0f} s")
    return Trip(origin, clone, env, demo_metrics, demo_json, demo_plots, adopted, before_pull)


@pytest.mark.slow
def test_the_demo_has_dvc_metrics_and_plots(trip):
    """`dvc metrics show` and `dvc plots show` right after the README's demo, before any DVC
    command: the demo builds every figure's headline numbers and lines."""
    assert "failed to load" not in trip.demo_metrics, trip.demo_metrics
    assert "failed to load" not in trip.demo_plots, trip.demo_plots
    assert numbers(trip.demo_json) == expected_numbers(trip.origin)


@pytest.mark.slow
def test_adopting_the_finished_demo_trains_nothing(trip):
    """Every stage runs its Snakemake target and finds every job done: the demo built everything
    the stages version, the figures' metrics and plot tables too."""
    origin, adopted = trip.origin, trip.adopted
    assert [s for s in STAGES if f"Running stage '{s}'" in adopted] == STAGES
    assert ran_rules(adopted) <= {"figures"}, ran_rules(adopted)
    lock = yaml.safe_load((origin / "dvc.lock").read_text())
    assert lock["stages"]["runs"]["cmd"] == "snakemake --workflow-profile profiles/demo runs"
    demo = yaml.safe_load((origin / "config.demo.yaml").read_text())
    params = lock["stages"]["runs"]["params"]["config.demo.yaml"]
    assert params["finetune"]["input_size"] == demo["finetune"]["input_size"]
    outs = {o["path"]: o for stage in lock["stages"].values() for o in stage["outs"]}
    assert outs["results/runs"]["nfiles"] == 2 * len(list((origin / "results" / "runs").rglob("*.csv")))


@pytest.mark.slow
def test_clone_before_pull_misses_only_data(trip):
    """A fresh clone's `dvc status` before `dvc pull`: every output is "not in cache" and the data
    between stages "deleted" (nothing pulled yet), while the code and params equal those the
    results were made with (nothing "modified" or "new")."""
    status = trip.before_pull
    changes = re.findall(r"^\t\t(\S.*?): +(\S+)$", status, flags=re.MULTILINE)
    outs = {"results/data", "results/runs", "figures", "results/metrics", ".snakemake/metadata"}
    assert outs <= {path for kind, path in changes if kind == "not in cache"}, status
    assert {path for kind, path in changes if kind == "deleted"} == {"results/data", "results/sources", "results/runs"}
    assert {kind for kind, _ in changes} == {"not in cache", "deleted"}, status


@pytest.mark.slow
def test_clone_is_up_to_date_for_dvc(trip):
    clone, env = trip.clone, trip.env
    status = dvc(clone, "status", env=env)
    assert status.strip() == "Data and pipelines are up to date.", status
    dry = dvc(clone, "repro", "--dry", env=env)
    assert "Running stage" not in dry and all(f"Stage '{s}' didn't change" in dry for s in STAGES), dry


@pytest.mark.slow
def test_clone_plans_no_snakemake_job(trip):
    """Pulled files have new, unordered times (here: inputs newer than outputs); Snakemake's
    pulled records hold the checksums of every input, so newer but unchanged inputs are no
    reason to rerun anything."""
    clone, env = trip.clone, trip.env
    for targets in ((), ("figures",)):
        out = snakemake_dry(clone, *targets, env=env)
        assert "finetune" not in job_counts(out), out
        assert "Nothing to be done" in out, out


@pytest.mark.slow
def test_clone_has_every_figure_and_result(trip):
    origin, clone = trip.origin, trip.clone
    dirs = ("figures", "results/metrics", "results/plots", "results/figures", "results/runs")
    ours, theirs = files(origin, *dirs), files(clone, *dirs)
    assert sorted(theirs) == sorted(ours) and any(name.endswith(".pdf") for name in ours)
    assert [name for name in ours if ours[name] != theirs[name]] == []
    assert (clone / "results" / "runs.csv").read_bytes() == (origin / "results" / "runs.csv").read_bytes()


@pytest.mark.slow
def test_metrics_and_plots(trip, tmp_path):
    """In the pulled clone: `dvc metrics show` prints every figure's numbers, `dvc plots show`
    draws every figure's lines."""
    clone, env = trip.clone, trip.env
    table = dvc(clone, "metrics", "show", env=env)
    assert "failed to load" not in table, table
    got = numbers(dvc(clone, "metrics", "show", "--json", env=env))
    assert got == expected_numbers(trip.origin)
    fig2a, fig2b = got["results/metrics/fig2a.json"], got["results/metrics/fig2b.json"]
    assert all(isinstance(v, float) for v in (fig2a["natural"], fig2a["l2_3"], fig2b["l2_3 - natural"]))
    row = next(line for line in table.splitlines() if line.startswith("results/metrics/fig2a.json"))
    assert {f"{fig2a['natural']:g}", f"{fig2a['l2_3']:g}"} <= set(row.split()), (row, fig2a)
    out = dvc(clone, "plots", "show", "-o", str(tmp_path / "plots"), env=env)
    assert "failed" not in out.lower(), out
    html = (tmp_path / "plots" / "index.html").read_text()
    assert "results/plots/fig2a.csv" in html and '"series"' in html


@pytest.mark.slow
def test_a_config_change_in_the_clone_reruns_exactly_its_jobs(trip):
    """The clone has Snakemake's records of how its files were made: a new fine-tuning lr in the
    demo's overlay makes DVC's runs stage stale and Snakemake plans every run again; restored,
    nothing."""
    clone, env = trip.clone, trip.env
    overlay = clone / "config.demo.yaml"
    text = overlay.read_text()
    try:
        edited = yaml.safe_load(text)
        edited["finetune"]["lr"] = 0.05
        overlay.write_text(yaml.safe_dump(edited))
        assert "finetune.lr" in dvc(clone, "params", "diff", env=env)
        status = dvc(clone, "status", env=env)
        assert "runs:" in status and "modified:           finetune" in status, status
        runs = grid.all_runs(merged_config(clone))
        assert job_counts(snakemake_dry(clone, "runs", env=env)).get("finetune") == len(runs)
    finally:
        overlay.write_text(text)
    assert "Data and pipelines are up to date" in dvc(clone, "status", env=env)


def test_stage_params_are_in_the_configs():
    """DVC refuses a stage whose params are missing from their file; the demo's overlay must
    keep every section its stages list, and params.yaml names a workflow profile."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert list(stages) == STAGES
    profile = yaml.safe_load((REPO / "params.yaml").read_text())["profile"]
    assert profile == "default" and (REPO / "profiles" / "demo" / "config.yaml").exists()
    for name, stage in stages.items():
        for entry in stage["params"]:
            if isinstance(entry, str):
                assert entry == "profile", name
                continue
            for path, keys in entry.items():
                config = yaml.safe_load((REPO / path).read_text())
                for key in keys:
                    section, _, sub = key.partition(".")
                    assert section in config and (not sub or sub in config[section]), f"{name}: {path}:{key}"


def test_paper_pipeline_offline(tmp_path):
    """The paper's pipeline, before any data and without dvc.lock: data -> runs -> figures, every
    stage to run."""
    env = tool_env(tmp_path)
    root = copy_workflow(tmp_path / "paper")
    copy_dvc_files(root)
    git(root, "init", "-q", env=env)
    dot = dvc(root, "dag", "--dot", env=env)
    assert '"data" -> "runs"' in dot and '"runs" -> "figures"' in dot, dot
    # No dvc.lock (the repository as published): DVC has no record of any run, so every stage
    # is listed with its params "new" and its outputs "deleted" (docs/dvc.md).
    status = dvc(root, "status", env=env)
    assert all(f"{stage}:" in status for stage in STAGES), status
    assert len(re.findall(r"^\t\tnew: +params\.yaml$", status, flags=re.MULTILINE)) == len(STAGES), status
    assert re.search(r"^\t\tdeleted: +\.snakemake/metadata$", status, flags=re.MULTILINE), status
