"""Nothing lost, nothing trusted blindly, on real Snakemake runs: a run killed halfway resumes,
a workflow killed at random moments finishes with a clean run's numbers, and broken inputs or an
unwritable results folder fail naming the file while nothing already finished is deleted. A
training job with no GPU (and the CPU not allowed), or with a folder it cannot write or fill,
fails before it trains, naming the fix."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import clone_results, copy_workflow, missing

from robust_transfer import grid, recipes

pytestmark = pytest.mark.slow
DEMO = ["--workflow-profile", "profiles/demo"]


def _snakemake(root: Path, *args, check=True, configfiles=("config.demo.yaml",), env=None, prefix=()):
    cmd = [sys.executable, "-m", "snakemake", *DEMO, *map(str, args), "--configfile", *map(str, configfiles)]
    proc = subprocess.run([*prefix, *cmd], cwd=root, capture_output=True, text=True, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-4000:]}")
    return proc


def _metrics(path: Path) -> pd.DataFrame:
    return pd.read_csv(path).drop(columns="time")


def _longest_run() -> grid.Run:
    """The demo run with the most epochs (so that it can be killed halfway)."""
    config = _demo()
    return max(grid.all_runs(config), key=lambda r: (recipes.schedule(config["finetune"], r.size)["epochs"], r.k))


def test_a_run_killed_halfway_resumes_with_identical_metrics_in_less_time(demo, tmp_path):
    """SIGKILL the whole Snakemake process tree once the run has saved a state past its first
    evaluation epoch; the rerun continues from there (its log says so), ends with exactly the
    metrics of the uninterrupted run and takes less time than it did."""
    root = clone_results(demo, tmp_path / "wf")
    run = _longest_run()
    target, state = f"{run.path}.csv", root / grid.state_path(run.path)
    before = _metrics(demo.root / target)
    whole = yaml.safe_load((demo.root / f"{run.path}.json").read_text())["wall_seconds"]
    cmd = [sys.executable, "-m", "snakemake", *DEMO, "--forcerun", target, "--configfile", "config.demo.yaml"]
    proc = subprocess.Popen(cmd, cwd=root, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    saves, deadline, last = 0, time.time() + 600, None
    while saves < 2 and time.time() < deadline and proc.poll() is None:  # the second save: past epoch 1
        stamp = state.stat().st_mtime_ns if state.exists() else None
        if stamp is not None and stamp != last:
            saves, last = saves + 1, stamp
        time.sleep(0.05)
    assert saves >= 2, "the run finished or stalled before saving twice"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    _snakemake(root, "--unlock")
    _snakemake(root, target)
    log = (root / "logs" / "finetune" / f"{run.path.removeprefix('results/runs/')}.log").read_text()
    assert "resumed from" in log
    pd.testing.assert_frame_equal(_metrics(root / target), before)
    resumed = yaml.safe_load((root / f"{run.path}.json").read_text())["wall_seconds"]
    print(f"uninterrupted {whole:.1f} s, resumed {resumed:.1f} s")
    assert resumed < whole
    assert not state.exists()  # removed once the run completed


# A small demo for the kill test: digits only, n = 20, two seeds, few epochs, four figures
# (the figures left out still name epochs that the short schedule logs, or the config check stops).
LOGGED = [1, 3, 5, 6]
SMALL = {
    "sources": {s: {"train": {"epochs": 2}} for s in ("natural", "l2_3", "linf_4", "linf_8")},
    "grid": {"datasets": ["digits"], "sizes": [20], "seeds": {"count": 2, "by_size": {}}},
    "finetune": {"schedule": [{"max_size": None, "epochs": 6, "eval_every": 2}]},
    "figures": {
        **{f: {"in_all": False} for f in ("fig2a", "fig4b", "fig5a", "fig5b", "fig5d", "fig5e")},
        **{f: {"in_all": False, "epochs": LOGGED} for f in ("fig3a", "fig3b")},
        **{
            f: {"in_all": False, "epochs": LOGGED} for f in ("fig10a_800", "fig10b_800", "fig10a_12800", "fig10b_12800")
        },
        **{f: {"in_all": False} for f in ("fig11a_linf8", "fig11b_linf8", "table2")},
        "fig2b": {"sizes": None},
        "fig5c": {"sizes": None},
        "fig4a": {"sizes": None},
        "table7": {"sizes": None},
    },
}


def _outputs(root: Path) -> dict[str, pd.DataFrame]:
    out = {"runs.csv": pd.read_csv(root / "results" / "runs.csv").drop(columns="time")}
    for path in sorted((root / "results" / "figures").glob("*/summary.csv")) + sorted((root / "figures").glob("*.csv")):
        out[str(path.relative_to(root))] = pd.read_csv(path)
    return out


def test_killing_the_whole_workflow_at_random_moments_changes_no_number(tmp_path):
    """Three SIGKILLs of the whole process tree at random moments (seeded), an unlock after each
    (a killed Snakemake leaves its lock), then a run to the end: the run table and every
    figure's numbers equal those of a clean run of the same config."""
    overlays = ["config.demo.yaml", "small.yaml"]
    clean, killed = copy_workflow(tmp_path / "clean"), copy_workflow(tmp_path / "killed")
    for root in (clean, killed):
        (root / "small.yaml").write_text(yaml.safe_dump(SMALL))
    start = time.time()
    _snakemake(clean, configfiles=overlays)
    seconds = time.time() - start
    moments = random.Random(0)
    for _ in range(3):
        cmd = [sys.executable, "-m", "snakemake", *DEMO, "--configfile", *overlays]
        proc = subprocess.Popen(
            cmd, cwd=killed, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(moments.uniform(0.15, 0.6) * seconds)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        _snakemake(killed, "--unlock", configfiles=overlays)
    _snakemake(killed, configfiles=overlays)
    ours, theirs = _outputs(killed), _outputs(clean)
    assert ours.keys() == theirs.keys() and len(ours) > 5
    for name in ours:
        pd.testing.assert_frame_equal(ours[name], theirs[name], obj=name)


def _fails_naming(root: Path, target: str, needle: str) -> None:
    """Running `target` (whose outputs are removed first: a job still to do) fails, and a job's
    log or Snakemake's output names the broken file (the first job to read it fails: a prepared
    split is read by `subsample` before `finetune` when its timestamp changed)."""
    for output in (root / target, root / target.replace(".csv", ".json")):
        output.unlink(missing_ok=True)
    proc = _snakemake(root, target, check=False)
    assert proc.returncode != 0
    logs = "".join(p.read_text() for p in (root / "logs").rglob("*.log"))
    assert needle in logs + proc.stdout + proc.stderr, (logs[-2000:], proc.stderr[-2000:])


def test_broken_inputs_fail_naming_the_file_and_delete_nothing_finished(demo, tmp_path):
    """A truncated prepared split, a truncated source checkpoint and a corrupted run table each
    fail the job that reads them, naming the file; every other finished run stays."""
    run = _longest_run()
    target, config = f"{run.path}.csv", _demo()
    fig = next(f for f in grid.in_all(config) if run in grid.figure_runs(config, f))
    cases = [
        (f"results/data/{run.dataset}/train.npz", target, "unreadable prepared split"),
        (f"results/sources/{run.source}.pt", target, "not a readable torch checkpoint"),
        (target, f"results/figures/{fig}/summary.csv", "not a run table"),
    ]
    for i, (broken, job, message) in enumerate(cases):
        root = clone_results(demo, tmp_path / f"wf{i}")
        finished = {p for p in (root / "results" / "runs").rglob("*.csv")} - {root / job, root / broken}
        path = root / broken
        path.write_bytes(path.read_bytes()[: max(1000, path.stat().st_size // 3)] if i < 2 else b"garbage\x00\n")
        _fails_naming(root, job, f"{broken}: {message}")
        assert all(p.exists() for p in finished), f"case {broken}: a finished run was deleted"


def _demo() -> dict:
    from conftest import load_config

    return load_config("config.demo.yaml")


def test_an_unwritable_results_folder_fails_naming_it_and_deletes_nothing(demo, tmp_path):
    root = clone_results(demo, tmp_path / "wf")
    folder = root / "results" / "figures" / "fig2b"
    kept = {p: p.read_bytes() for p in folder.iterdir()}
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        missing("chattr +i is not permitted here: cannot make a folder unwritable for root")
    try:
        proc = _snakemake(root, "--forcerun", "results/figures/fig2b/summary.csv", "figures/fig2b.pdf", check=False)
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    assert proc.returncode != 0
    text = proc.stdout + proc.stderr + "".join(p.read_text() for p in (root / "logs" / "aggregate").glob("fig2b.log"))
    assert "results/figures/fig2b" in text and ("Permission" in text or "not permitted" in text), text[-3000:]
    assert {p: p.read_bytes() for p in folder.iterdir()} == kept
    assert (root / "figures" / "fig2b.pdf").exists() and (root / "results" / "runs.csv").exists()


# --- a training job that cannot do its work fails before it starts --------------------------------
# One from-scratch run of the demo (its source is a random init: nothing to pretrain first).
RUN = grid.Run("digits", "scratch", 16, "20", 20000000)
RUN_LOG = f"logs/finetune/{RUN.path.removeprefix('results/runs/')}.log"
NARROW = {"sources": {"scratch": {"random_init": {"width_per_group": 16}}}}  # the demo's width
PAPER_DEVICE = {"finetune": {"allow_cpu": False}, "pretrain": {"allow_cpu": False}}  # config.yaml's
CPU_OK = ("config.demo.yaml", "narrow.yaml")
NO_CPU = (*CPU_OK, "no_cpu.yaml")
NO_GPU = dict(os.environ, CUDA_VISIBLE_DEVICES="")  # the same test on a machine with a GPU


@pytest.fixture(scope="module")
def scratch_run(tmp_path_factory) -> Path:
    """A workflow copy with the run's inputs built (data, subset, source), not the run."""
    root = copy_workflow(tmp_path_factory.mktemp("scratch") / "wf")
    (root / "narrow.yaml").write_text(yaml.safe_dump(NARROW))
    (root / "no_cpu.yaml").write_text(yaml.safe_dump(PAPER_DEVICE))
    inputs = ["results/sources/scratch.pt", "results/subsets/digits/make_loaders/n20/s20000000.npy"]
    _snakemake(root, *inputs, configfiles=CPU_OK)
    return root


def _outputs_of(root: Path, run: grid.Run) -> list[Path]:
    return [root / f"{run.path}.{ext}" for ext in ("csv", "json")]


def _did_not_train(root: Path) -> str:
    """The run's log, after checking that the job stopped before loading its data (the line
    saying what it trains on) and before any epoch, leaving no outputs."""
    log = (root / RUN_LOG).read_text()
    assert f"run {RUN.path}:" not in log and "epoch" not in log, log[-2000:]
    assert not any(p.exists() for p in _outputs_of(root, RUN))
    return log


def test_without_a_gpu_a_job_of_the_paper_config_fails_at_once_naming_the_fix(scratch_run):
    """allow_cpu: false (config.yaml's) and no GPU visible: the fine-tuning run and a source's
    pretraining each fail before loading anything, their logs (and Snakemake's output) saying
    what was looked at and the fix; nothing is written."""
    root = scratch_run
    start = time.time()
    targets = [f"{RUN.path}.csv", "results/sources/natural.pt"]
    proc = _snakemake(root, "--keep-going", *targets, configfiles=NO_CPU, env=NO_GPU, check=False)
    seconds = time.time() - start
    assert proc.returncode != 0
    log = _did_not_train(root)
    for needle in (
        "no GPU is visible to this job and finetune.device is auto and finetune.allow_cpu is false",
        "torch.cuda.is_available() is False",
        "CUDA_VISIBLE_DEVICES is ''",
        "Fix: run it on a GPU node",
        "echo 'finetune: {allow_cpu: true}' > cpu.yaml",
    ):
        assert needle in log, needle
    assert "NoGPU: no GPU is visible" in proc.stdout + proc.stderr  # seen without opening the log
    pretrain = (root / "logs" / "pretrain_source" / "natural.log").read_text()
    assert "pretrain.allow_cpu is false" in pretrain and "echo 'pretrain: {allow_cpu: true}'" in pretrain
    assert "epoch" not in pretrain and not (root / "results" / "sources" / "natural.pt").exists()
    assert not (root / "resume").exists()
    print(f"both jobs failed, Snakemake included, in {seconds:.0f} s")


def test_with_the_cpu_allowed_the_run_trains_logging_every_epoch(scratch_run):
    """The demo's allow_cpu: true: the same run trains on the CPU; its log has one progress line
    per epoch (epoch/total, train loss and accuracy, images/s, elapsed, time left shrinking to
    zero). Switching allow_cpu back off reruns nothing: where a job runs is not a param."""
    from test_train import progress_lines

    root = scratch_run
    _snakemake(root, f"{RUN.path}.csv", configfiles=CPU_OK, env=NO_GPU)
    log = (root / RUN_LOG).read_text()
    assert "on cpu (no GPU visible; finetune.allow_cpu: true)" in log
    epochs = progress_lines(log.splitlines())
    total = recipes.schedule(_demo()["finetune"], RUN.size)["epochs"]
    assert [(e["epoch"], e["total"]) for e in epochs] == [(i, total) for i in range(1, total + 1)]
    assert all(e["rate"] > 0 and 0 <= e["acc"] <= 100 for e in epochs)
    left = [e["left"] for e in epochs]
    # shrinking to zero: an epoch's noise may lift one estimate by a tenth or two, no more
    assert left[0] > left[len(left) // 2] > left[-1] == 0 and all(b <= a + 0.2 for a, b in zip(left, left[1:])), left
    metrics = pd.read_csv(root / f"{RUN.path}.csv")
    for _, row in metrics.iterrows():  # the progress lines carry the logged rows' numbers
        assert epochs[int(row["epoch"]) - 1]["loss"] == float(f"{row['train_loss']:.4f}")
    dry = _snakemake(root, "-n", f"{RUN.path}.csv", configfiles=NO_CPU)
    assert "Nothing to be done" in dry.stdout + dry.stderr


def _fails_before_training(root: Path, needle: str, prefix=()) -> str:
    for output in _outputs_of(root, RUN):
        output.unlink(missing_ok=True)
    start = time.time()
    proc = _snakemake(root, f"{RUN.path}.csv", configfiles=CPU_OK, env=NO_GPU, check=False, prefix=prefix)
    seconds = time.time() - start
    assert proc.returncode != 0
    log = _did_not_train(root)
    assert needle in log, log[-3000:]
    assert "Fix:" in log
    return f"{seconds:.0f} s"


def test_a_folder_the_run_cannot_write_or_fill_fails_before_training_naming_it(scratch_run):
    """As root, whom permissions do not stop: a file where the resume folder should be, an
    immutable results folder (chattr +i), and a 1 MB file system (tmpfs, in a private mount
    namespace) as the resume folder. Each fails before the data are loaded, naming the folder
    and what is wrong."""
    root = scratch_run
    state_folder = Path(grid.state_path(RUN.path)).parent
    shutil.rmtree(root / "resume", ignore_errors=True)
    (root / "resume").write_text("a file where a folder should be")
    times = [_fails_before_training(root, f"{state_folder} (not a folder: resume is a file)")]
    (root / "resume").unlink()

    folder = root / RUN.path.rsplit("/", 1)[0]
    folder.mkdir(parents=True, exist_ok=True)
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        missing("chattr +i is not permitted here: cannot make a folder unwritable for root")
    try:
        times.append(_fails_before_training(root, f"{folder.relative_to(root)} (read-only: Operation not permitted)"))
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)

    (root / "resume").mkdir()
    mount = ["unshare", "-m", "sh", "-c", 'mount -t tmpfs -o size=1m tmpfs resume && exec "$@"', "sh"]
    if subprocess.run([*mount, "true"], cwd=root, capture_output=True).returncode != 0:
        missing("unshare -m and mount are not permitted here: cannot give a folder a tiny file system")
    times.append(
        _fails_before_training(root, f"not enough disk space for this job in {state_folder}: 1.0 MB free", mount)
    )
    assert "MB needed" in (root / RUN_LOG).read_text()
    print("failed in", ", ".join(times), "(Snakemake included)")
