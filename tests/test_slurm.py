"""The demo through SLURM: Table 2 of the demo and everything it needs, run with
`--profile profiles/slurm --workflow-profile profiles/demo` on a one-node test cluster
(tests/slurm_cluster.py: Debian's slurm-wlm and munge, installed when absent, two fake GPUs as
GRES), in a fresh copy of the workflow. Checked: every non-local job went through sbatch, GPU
jobs asked for exactly one GPU and for the time limit their rule estimates, and the numbers equal
the local run of the README's demo (the session fixture `demo`). Then the same fine-tuning runs
packed two to a SLURM job: half the submissions, one GPU each, the same numbers.

Outside CI, a machine that cannot run the cluster (not root, no apt-get, install or start failed)
skips these tests and says why; under CI (CI=true) that is a failure with the reason."""

from __future__ import annotations

import csv
import re
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import SNAKEMAKE, copy_workflow, load_config, missing
from slurm_cluster import SlurmCluster, SlurmUnavailable

from robust_transfer import grid

FIG = "table2"  # 4 runs (2 sources x 2 datasets, n=80): 9 SLURM jobs, about 2.5 minutes here
TARGET = f"figures/{FIG}.md"
# The README's SLURM demo command, plus what a cluster without accounting needs; the test
# cluster's helper adds a 2 s first status check (the plugin's default waits 40 s).
SLURM = ["--profile", "profiles/slurm", "--workflow-profile", "profiles/demo", "--slurm-no-account"]
SLURM += list(SlurmCluster.SNAKEMAKE_ARGS)
PACK = 2  # fine-tuning runs per SLURM job in the packed run
PACKING = ["--groups", "finetune=finetune_pack", "--group-components", f"finetune_pack={PACK}", "--resources", "gpu=1"]
GPU_RULES = {"finetune", "pretrain_source"}
TIMEOUT = 900  # seconds for one Snakemake run (SIGKILL after; the cluster's stop() cancels the rest)


@pytest.fixture(scope="session")
def slurm():
    """A one-node SLURM cluster for this session, stopped (by PID) whatever happens."""
    cluster = SlurmCluster(real_memory=65536)  # profiles/slurm asks 12 GB per GPU job; run two at once
    try:
        cluster.start()
    except SlurmUnavailable as e:
        missing(f"cannot run a SLURM test cluster here: {e}")  # CI=true: a failure with the reason
    try:
        yield cluster
    finally:
        cluster.stop()


@dataclass
class ClusterRun:
    root: Path
    output: str  # Snakemake's stdout + stderr
    seconds: float
    job_ids: list[int]  # the SLURM jobs this run submitted
    jobs: list[dict]  # their `scontrol show job` fields
    metrics: dict[str, list[dict]]  # run path -> metrics rows without `time`, right after the run
    summary: str


def run_on_cluster(slurm: SlurmCluster, root: Path, *args: str) -> ClusterRun:
    before = len(slurm.submitted_job_ids())
    start = time.time()
    cmd = [*SNAKEMAKE, TARGET, *SLURM, *args]
    try:
        proc = subprocess.run(cmd, cwd=root, env=slurm.env, capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"snakemake through SLURM ran past {TIMEOUT} s:\n{(e.stderr or b'')[-6000:]!r}")
    seconds = time.time() - start
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"snakemake through SLURM failed ({proc.returncode}):\n{output[-8000:]}"
    ids = slurm.submitted_job_ids()[before:]
    jobs = [j for j in slurm.jobs() if int(j["JobId"]) in ids]
    summary = (root / "results" / "figures" / FIG / "summary.csv").read_text()
    return ClusterRun(root, output, seconds, ids, jobs, run_metrics(root), summary)


def run_metrics(root: Path) -> dict[str, list[dict]]:
    """Every run of the figure: its metrics rows without the wall-time column."""
    out = {}
    for run in grid.figure_runs(load_config("config.demo.yaml"), FIG):
        with open(root / f"{run.path}.csv", newline="") as f:
            out[run.path] = [{k: v for k, v in row.items() if k != "time"} for row in csv.DictReader(f)]
    return out


def rule_of(job: dict) -> str:
    """The rule (or group) of a SLURM job, from the plugin's comment rule_<name>_wildcards_..."""
    return re.match(r"^rule_(.+?)(?:_wildcards_.*)?$", job["Comment"]).group(1)


@pytest.fixture(scope="module")
def cluster_run(slurm, tmp_path_factory) -> ClusterRun:
    """The demo's Table 2 and all it needs, in a fresh copy of the workflow, through SLURM, with
    a user's overlay on top of the demo's: Snakemake alone would drop config.demo.yaml for
    --configfile mine.yaml, and the cluster jobs would train the paper's settings. Each job gets
    the composed list (config.demo.yaml mine.yaml) back, so the numbers equal the local demo's."""
    root = copy_workflow(tmp_path_factory.mktemp("slurm") / "workflow")
    (root / "mine.yaml").write_text("aggregate: {bootstrap_seed: 0}  # the demo's own value: no number changes\n")
    return run_on_cluster(slurm, root, "--configfile", "mine.yaml")


@pytest.fixture(scope="module")
def packed_run(cluster_run, slurm) -> ClusterRun:
    """The same fine-tuning runs again, PACK to a SLURM job (the README's packing flags)."""
    return run_on_cluster(slurm, cluster_run.root, "--forcerun", "finetune", *PACKING)


def test_slurm_profile_leaves_time_limits_to_the_rules(tmp_path):
    """No cluster needed: in a dry run of the paper's Fig 5c through profiles/slurm, each
    fine-tuning job's runtime is its rule's estimate (set-resources would override it)."""
    root = copy_workflow(tmp_path / "workflow")
    cmd = [*SNAKEMAKE, "-n", "figures/fig5c.pdf", "--profile", "profiles/slurm"]
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    config = load_config()
    jobs = re.findall(r"^rule finetune:\n(.*?)(?=^\S)", proc.stdout, re.M | re.S)
    assert len(jobs) > 900  # 972 runs
    for job in jobs:
        wildcards = dict(re.findall(r"(\w+)=([^,\s]+)", re.search(r"wildcards: (.*)", job).group(1)))
        resources = dict(re.findall(r"(\w+)=([^,\s]+)", re.search(r"resources: (.*)", job).group(1)))
        assert int(resources["runtime"]) == grid.run_minutes(config, wildcards["dataset"], wildcards["size"])
        assert resources["gpu"] == "1" and resources["mem_mb"] == "12000", resources


@pytest.mark.slow
def test_every_cluster_job_went_through_sbatch(cluster_run):
    cluster = Counter(re.findall(r"^rule (\w+):$", cluster_run.output, re.M))  # local jobs print "localrule"
    local = Counter(re.findall(r"^localrule (\w+):$", cluster_run.output, re.M))
    assert cluster == {"prepare": 3, "pretrain_source": 2, "finetune": 4}, cluster_run.output[-4000:]
    assert set(local) == {"download", "subsample", "aggregate", "table"}
    assert len(cluster_run.job_ids) == sum(cluster.values())  # one sbatch per cluster job
    assert Counter(rule_of(j) for j in cluster_run.jobs) == cluster
    assert {j["JobState"] for j in cluster_run.jobs} == {"COMPLETED"}


@pytest.mark.slow
def test_gpu_jobs_ask_for_one_gpu_and_their_rules_time_limit(cluster_run):
    config = load_config("config.demo.yaml")
    for job in cluster_run.jobs:
        rule = rule_of(job)
        assert job.get("TresPerJob", "") == ("gres:gpu:1" if rule in GPU_RULES else ""), job
        # the rule's estimate (robust_transfer.grid), not a profile's constant; attempt 1
        minutes = {
            "finetune": grid.run_minutes(config, "lfw_8", "80"),
            "pretrain_source": grid.pretrain_minutes(config, "l2_3"),
            "prepare": 60,
        }[rule]
        assert job["TimeLimit"] == f"{minutes // 60:02d}:{minutes % 60:02d}:00", job


@pytest.mark.slow
def test_numbers_equal_the_local_demo(cluster_run, demo):
    assert cluster_run.summary == (demo.root / "results" / "figures" / FIG / "summary.csv").read_text()
    assert cluster_run.metrics == run_metrics(demo.root)
    assert len(cluster_run.metrics) == 4


@pytest.mark.slow
def test_packed_runs_take_fewer_submissions_and_give_the_same_numbers(packed_run, demo):
    runs = len(packed_run.metrics)
    assert len(packed_run.job_ids) == runs // PACK == len(packed_run.jobs) == 2
    for job in packed_run.jobs:
        assert job["Comment"].startswith("rule_finetune_pack"), job
        assert job["TresPerJob"] == "gres:gpu:1" and job["JobState"] == "COMPLETED", job
        minutes = PACK * grid.run_minutes(load_config("config.demo.yaml"), "lfw_8", "80")  # the pack's runs, summed
        assert job["TimeLimit"] == f"{minutes // 60:02d}:{minutes % 60:02d}:00", job
    assert packed_run.metrics == run_metrics(demo.root)
    assert packed_run.summary == (demo.root / "results" / "figures" / FIG / "summary.csv").read_text()
