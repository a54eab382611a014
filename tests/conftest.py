"""Shared fixtures: the repository, its configs (the paper's and the demo overlaid on it), and a
runner for real Snakemake invocations of the real workflow."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from snakemake.utils import update_config

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def load_config(*overlays: str | Path) -> dict:
    """config.yaml with overlays merged in, exactly as Snakemake merges --configfile."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    for path in overlays:
        update_config(config, yaml.safe_load((REPO / path).read_text()))
    return config


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
