"""Style is enforced where CI runs: ruff (lint and format), snakefmt and Snakemake's linter, with
the versions pyproject.toml pins; and every list of names derives from, or is checked against,
its one registry."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import yaml
from conftest import REPO

from robust_transfer import datasets, grid, studies

SCHEMA = yaml.safe_load((REPO / "schemas" / "config.schema.yaml").read_text())


def _tool(name: str) -> str:
    path = shutil.which(name, path=str(REPO / ".venv" / "bin")) or shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[test]' installs the pinned version")
    return path


@pytest.mark.parametrize("args", [["check", "."], ["format", "--check", "."]], ids=["lint", "format"])
def test_ruff(args):
    proc = subprocess.run([_tool("ruff"), *args], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_snakefmt():
    proc = subprocess.run([_tool("snakefmt"), "--check", "."], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_snakemake_lint():
    cmd = [sys.executable, "-m", "snakemake", "--lint", "--workflow-profile", "none"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0 and "Congratulations" in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_schema_loaders_are_the_registry():
    """The schema's loader enum is robust_transfer.datasets.LOADERS, nothing more or less."""
    loader = SCHEMA["properties"]["datasets"]["additionalProperties"]["properties"]["loader"]
    assert sorted(loader["enum"]) == sorted(datasets.LOADERS)


def test_schema_source_recipes_are_the_source_kinds():
    props = SCHEMA["properties"]["sources"]["additionalProperties"]["properties"]
    assert set(grid.SOURCE_KINDS) <= set(props)
    assert set(props) - set(grid.SOURCE_KINDS) == {"sha256", "note", "arch", "norm", "eps", "imagenet_top1"}
    assert sorted(props["arch"]["enum"]) == sorted(studies.ARCH_NAMES)  # the architectures a source may be


def test_published_sizes_and_classes_come_from_the_loaders():
    from robust_transfer import published

    assert published.FULL_SIZE["svhn"] == datasets.LOADERS["svhn"].train_size == 73257
    assert published.CLASSES["cifar100"] == 100 and published.CLASSES["mnist"] == 10
