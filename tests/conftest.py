"""Shared fixtures: the repository, its configs (the paper's and the demo overlaid on it), and a
runner for real Snakemake invocations of the real workflow."""

from __future__ import annotations

import copy
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
from snakemake.utils import update_config

from robust_transfer.files import copy_workflow  # noqa: F401 (tests import it from here)

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def load_config(*overlays: str | Path) -> dict:
    """config.yaml with overlays merged in, exactly as Snakemake merges --configfile, and the
    studies' source families expanded, as the workflow sees it."""
    from robust_transfer import studies

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    for path in overlays:
        update_config(config, yaml.safe_load((REPO / path).read_text()))
    studies.expand(config, REPO)  # each study's source families, as the Snakefile adds them
    return config


IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(reason: str):
    """A prerequisite of a test is absent: under CI (CI=true) that is a failure with its reason,
    never a silent skip; elsewhere the test is skipped, saying why."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: prerequisites must be present)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def paper_config() -> dict:
    return load_config()


@pytest.fixture
def config(paper_config) -> dict:
    """A fresh copy of the paper's config that a test may edit."""
    return copy.deepcopy(paper_config)


@pytest.fixture(scope="session")
def demo_config() -> dict:
    return load_config("config.demo.yaml")


def snakemake(workdir: Path, *args, configfiles=(), check=True, env=None, profile="none"):
    """Run Snakemake on the workflow copy in `workdir` if there is one, else on the repository
    (with the repository's config.yaml, which Snakemake looks for in the working directory).
    `configfiles` are overlays merged in order (one --configfile flag: a second would replace it)."""
    snakefile = workdir / "Snakefile" if (workdir / "Snakefile").exists() else REPO / "Snakefile"
    base = [] if (workdir / "config.yaml").exists() else [REPO / "config.yaml"]
    overlays = [*base, *configfiles]
    cmd = SNAKEMAKE + ["-s", str(snakefile), "--directory", str(workdir), "--workflow-profile", profile]
    cmd += list(map(str, args)) + (["--configfile", *map(str, overlays)] if overlays else [])  # last: it takes a list
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


def job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table of a (dry) run: rule -> count (without the total)."""
    counts = {}
    if "Job stats:" not in output:
        return counts
    block = output.split("Job stats:", 1)[1]
    for line in block.splitlines()[3:]:
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if not m:
            break
        counts[m.group(1)] = int(m.group(2))
    counts.pop("total", None)
    return counts


# --- the README's demo, run once per test session ---------------------------------------------


def readme_commands() -> tuple[str, str]:
    """The README's first two commands: install + demo, install + tests."""
    text = (REPO / "README.md").read_text()
    commands = re.findall(r"```bash\n(python3 -m venv .venv && [^\n]+)\n```", text)
    assert len(commands) >= 2, "README.md lost its two commands"
    return commands[0], commands[1]


def demo_command() -> list[str]:
    """The README's demo command, as written, after its install step: `.venv/bin/snakemake ...`
    runs as this interpreter's Snakemake (the tests run inside that installation)."""
    return as_run(readme_commands()[0].split("&&")[-1].strip())


SALMAN_DEMO = re.compile(r"`(snakemake salman2020 [^`]*--workflow-profile profiles/demo[^`]*)`")


def salman_demo_command() -> list[str]:
    """The README's command for the second study's demo (its table "What to run"), as written."""
    found = SALMAN_DEMO.findall((REPO / "README.md").read_text())
    assert found, "README.md lost the second demo's command (`snakemake salman2020 ... profiles/demo`)"
    return as_run(found[0])


def as_run(step: str) -> list[str]:
    """A README command line run as this interpreter's Snakemake."""
    argv = shlex.split(step)
    assert argv[0].endswith("snakemake"), step
    return [sys.executable, "-m", "snakemake", *argv[1:]]


@dataclass
class Demo:
    root: Path  # a copy of the workflow holding the demo's results, figures and logs
    seconds: float  # wall time of the demo command
    stdout: str


@pytest.fixture(scope="session")
def demo(tmp_path_factory) -> Demo:
    """The README's demo command, as written (profiles/demo, config.demo.yaml unmodified), run
    once in a copy of the workflow: every test that needs finished runs reads them here."""
    root = copy_workflow(tmp_path_factory.mktemp("demo") / "workflow")
    start = time.time()
    proc = subprocess.run(demo_command(), cwd=root, capture_output=True, text=True)
    seconds = time.time() - start
    if proc.returncode != 0:
        pytest.fail(f"the README's demo failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return Demo(root, seconds, proc.stdout + proc.stderr)


@pytest.fixture(scope="session")
def salman_demo(demo, tmp_path_factory) -> Demo:
    """The README's second demo command (Salman et al.'s study), as written, run once in a copy
    of the finished first demo, as a user runs it after the first: the three sources the two
    demos share (natural, L2 0.5, Linf 8) are not trained again, and CI pays for the rest only
    (its time alone is measured in docs/demo.md)."""
    root = clone_results(demo, tmp_path_factory.mktemp("salman_demo") / "workflow")
    start = time.time()
    proc = subprocess.run(salman_demo_command(), cwd=root, capture_output=True, text=True)
    seconds = time.time() - start
    if proc.returncode != 0:
        pytest.fail(
            f"the README's second demo failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
        )
    return Demo(root, seconds, proc.stdout + proc.stderr)


def clone_results(demo: Demo, dest: Path) -> Path:
    """A copy of the finished demo (workflow, results, Snakemake's metadata) to modify."""
    shutil.copytree(demo.root, dest, symlinks=True)
    return dest
