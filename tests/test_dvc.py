"""DVC versions what Snakemake builds (docs/dvc.md), round trip on the README's demo: the finished
demo is adopted by `dvc repro` (no training), pushed to a local directory remote, and a fresh
clone that runs `dvc pull` has every figure and plans nothing: no DVC stage, no Snakemake job (no
fine-tuning run in particular), although its inputs are newer than the runs made from them.
Offline; reuses the session's demo instead of running it again."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
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


@pytest.fixture(scope="module")
def trip(demo, tmp_path_factory):
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

    adopted = dvc(origin, "repro", env=env)
    git(origin, "add", "-A", env=env)
    git(origin, "commit", "-qm", "the demo's results, versioned by DVC", env=env)
    dvc(origin, "remote", "add", "-d", "local", str(tmp / "remote"), env=env)
    git(origin, "commit", "-qam", "a local remote", env=env)
    dvc(origin, "push", env=env)

    clone = tmp / "clone"
    git(tmp, "clone", "-q", str(origin), str(clone), env=env)
    dvc(clone, "pull", env=env)
    # `dvc pull` writes files in no particular order; make it the worst one for Snakemake's time
    # comparison: every prepared dataset, source and subset newer than every run made from it.
    for folder in ("results/data", "results/sources", "results/subsets"):
        for path in (clone / folder).rglob("*"):
            os.utime(path)
    seconds = time.time() - start
    print(f"dvc round trip (adopt, push, clone, pull): {seconds:.0f} s")
    return origin, clone, adopted, env


@pytest.mark.slow
def test_adopting_the_finished_demo_trains_nothing(trip):
    """Every stage runs its Snakemake target; the demo already built everything but the
    figures' metrics and plot tables."""
    origin, _, adopted, _ = trip
    assert [s for s in STAGES if f"Running stage '{s}'" in adopted] == STAGES
    assert ran_rules(adopted) <= {"figure_metrics", "figures"}, ran_rules(adopted)
    lock = yaml.safe_load((origin / "dvc.lock").read_text())
    assert lock["stages"]["runs"]["cmd"] == "snakemake --workflow-profile profiles/demo runs"
    demo = yaml.safe_load((origin / "config.demo.yaml").read_text())
    params = lock["stages"]["runs"]["params"]["config.demo.yaml"]
    assert params["finetune"]["input_size"] == demo["finetune"]["input_size"]
    outs = {o["path"]: o for stage in lock["stages"].values() for o in stage["outs"]}
    assert outs["results/runs"]["nfiles"] == 2 * len(list((origin / "results" / "runs").rglob("*.csv")))


@pytest.mark.slow
def test_clone_is_up_to_date_for_dvc(trip):
    _, clone, _, env = trip
    assert "Data and pipelines are up to date" in dvc(clone, "status", env=env)
    dry = dvc(clone, "repro", "--dry", env=env)
    assert "Running stage" not in dry and all(f"Stage '{s}' didn't change" in dry for s in STAGES), dry


@pytest.mark.slow
def test_clone_plans_no_snakemake_job(trip):
    """Pulled files have new, unordered times (here: inputs newer than outputs); Snakemake's
    pulled records hold the checksums of every input, so newer but unchanged inputs are no
    reason to rerun anything."""
    _, clone, _, env = trip
    for targets in ((), ("figures",)):
        out = snakemake_dry(clone, *targets, env=env)
        assert "finetune" not in job_counts(out), out
        assert "Nothing to be done" in out, out


@pytest.mark.slow
def test_clone_has_every_figure_and_result(trip):
    origin, clone, _, _ = trip
    dirs = ("figures", "results/metrics", "results/plots", "results/figures", "results/runs")
    ours, theirs = files(origin, *dirs), files(clone, *dirs)
    assert sorted(theirs) == sorted(ours) and any(name.endswith(".pdf") for name in ours)
    assert [name for name in ours if ours[name] != theirs[name]] == []
    assert (clone / "results" / "runs.csv").read_bytes() == (origin / "results" / "runs.csv").read_bytes()


@pytest.mark.slow
def test_metrics_and_plots(trip, tmp_path):
    _, clone, _, env = trip
    metrics = dvc(clone, "metrics", "show", "--json", env=env)
    for fig in ("fig2a", "fig2b", "table7"):
        assert f"results/metrics/{fig}.json" in metrics
    assert '"l2_3 - natural"' in metrics
    out = dvc(clone, "plots", "show", "-o", str(tmp_path / "plots"), env=env)
    assert "failed" not in out.lower(), out
    html = (tmp_path / "plots" / "index.html").read_text()
    assert "results/plots/fig2a.csv" in html and '"series"' in html


@pytest.mark.slow
def test_a_config_change_in_the_clone_reruns_exactly_its_jobs(trip):
    """The clone has Snakemake's records of how its files were made: a new fine-tuning lr in the
    demo's overlay makes DVC's runs stage stale and Snakemake plans every run again; restored,
    nothing."""
    _, clone, _, env = trip
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
    """The paper's pipeline, before any data: data -> runs -> figures, every stage to run."""
    env = tool_env(tmp_path)
    root = copy_workflow(tmp_path / "paper")
    copy_dvc_files(root)
    git(root, "init", "-q", env=env)
    dot = dvc(root, "dag", "--dot", env=env)
    assert '"data" -> "runs"' in dot and '"runs" -> "figures"' in dot, dot
    status = dvc(root, "status", env=env)
    assert all(f"{stage}:" in status for stage in STAGES), status
