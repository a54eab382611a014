"""Finished runs rerun only when what they compute with changed, never because of a file's time:
`touch`, a `git checkout` of another commit and back, and copies of the whole folder (`cp -a`,
`cp -r`) after the README's demo plan nothing. Snakemake's own default (the `code` trigger)
replanned all 82 runs after `touch scripts/finetune.py`.

Real dry runs of the real workflow on the demo's finished results (the session's `demo`)."""

from __future__ import annotations

import os
import subprocess
import time

import pytest
from conftest import SNAKEMAKE, clone_results, job_counts

DEMO = ["--workflow-profile", "profiles/demo"]
CODE = ["Snakefile", "rules", "scripts", "robust_transfer", "config.yaml", "config.demo.yaml", "schemas"]
INPUTS = ["results/data", "results/sources", "results/subsets"]
pytestmark = pytest.mark.slow  # dry runs on the demo's finished results


def plan(root, *args) -> dict[str, int]:
    proc = subprocess.run([*SNAKEMAKE, "-n", *DEMO, *args], cwd=root, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return job_counts(proc.stdout)


def touch_all(root, names) -> None:
    """Every file under `names` one second newer than every output, as a checkout or copy makes it."""
    later = time.time() + 1
    for name in names:
        path = root / name
        for f in [path] if path.is_file() else path.rglob("*"):
            if f.is_file():
                os.utime(f, (later, later))


def test_touching_code_and_inputs_reruns_nothing(demo, tmp_path):
    root = clone_results(demo, tmp_path / "touched")
    assert plan(root) == {}
    touch_all(root, CODE + INPUTS)
    assert plan(root) == {}
    # what does rerun: a changed input's content reruns its users, and only them
    prepared = root / "results" / "data" / "lfw" / "test.npz"
    prepared.write_bytes(prepared.read_bytes())  # same content, new time: nothing
    assert plan(root) == {}


def test_a_changed_param_reruns_exactly_its_jobs(demo, tmp_path):
    """The other side: rerunning by content, not time, still reruns what a change makes stale."""
    root = clone_results(demo, tmp_path / "edited")
    text = (root / "config.demo.yaml").read_text()
    (root / "config.demo.yaml").write_text(text.replace("collapse_margin: 1.0", "collapse_margin: 1.1"))
    counts = plan(root)
    assert "finetune" not in counts and counts.get("collect") == 1, counts


def test_git_checkout_of_another_commit_and_back_reruns_nothing(demo, tmp_path):
    root = clone_results(demo, tmp_path / "git")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org"]

    def run(*args):
        subprocess.run([*git, *args], cwd=root, check=True, capture_output=True)

    run("init", "-q", "-b", "main")
    run("add", *CODE)
    run("commit", "-qm", "the demo's code")
    for name in ["scripts/finetune.py", "robust_transfer/train.py", "robust_transfer/plots.py", "rules/finetune.smk"]:
        with open(root / name, "a") as f:
            f.write("\n# another commit\n")
    run("commit", "-qam", "another commit")
    run("checkout", "-q", "HEAD~1")
    run("checkout", "-q", "main")
    run("checkout", "-q", "HEAD~1")  # back to the commit the demo was built with
    assert (root / "scripts" / "finetune.py").stat().st_mtime > (root / "results" / "runs.csv").stat().st_mtime
    assert plan(root) == {}


def test_copies_of_the_whole_folder_rerun_nothing(demo, tmp_path):
    for flags in (["-a"], ["-r"]):
        copy = tmp_path / f"copy{flags[0]}"
        subprocess.run(["cp", *flags, str(demo.root), str(copy)], check=True)
        assert plan(copy) == {}, f"cp {flags[0]}"


def test_an_overlay_on_the_profile_that_changes_nothing_reruns_nothing(demo, tmp_path):
    """`--configfile mine.yaml` on top of the demo's profile, restating the demo's own values:
    nothing replans. Params are compared as text, so the composed config must keep the order of
    keys Snakemake gives the profile's overlay (a reordered pretrain section reran every source)."""
    root = clone_results(demo, tmp_path / "overlay")
    (root / "mine.yaml").write_text("finetune: {lr: 0.03}\naggregate: {collapse_margin: 1.0}\n")
    assert plan(root, "--configfile", "mine.yaml") == {}
    assert plan(root, "--configfile", "config.demo.yaml", "mine.yaml") == {}
