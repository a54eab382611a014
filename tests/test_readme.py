"""The README's cost table says what `python -m robust_transfer.plan` computes, number for number:
every row's fine-tuning runs, device-hours and disk are recomputed here with the plan's own
functions, so a change to the grid, the cost model or the README that makes them disagree fails.
Pure Python, no Snakemake run: seconds."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import REPO

from robust_transfer import plan

HEADER = "| target | fine-tuning runs | device-hours | disk (at most) |"
DEMO = "profiles/demo"  # the row whose target cell names the demo: `all` under the demo's profile


def cost_rows(text: str) -> list[list[str]]:
    """The cells of each row of the README's cost table (the table under HEADER)."""
    assert HEADER in text, f"README.md lost its cost table ({HEADER})"
    rows = []
    for line in text.split(HEADER, 1)[1].splitlines()[2:]:  # skip the header's remainder and |---|
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def target_of(cell: str) -> tuple[str, str | None]:
    """A row's target and workflow profile: `all` under profiles/demo for the demo's row, else the
    one target in backticks."""
    if "demo" in cell:
        return "all", DEMO
    names = re.findall(r"`([^`]+)`", cell)
    assert len(names) == 1, f"a cost row names no single target: {cell!r}"
    return names[0], None


def computed(target: str, profile: str | None) -> tuple[list[str], dict]:
    """What the plan says for a target, formatted as the README writes it (runs and hours with
    thousands separators, disk as the plan prints it), and the device it used."""
    config = plan.load_config(Path("config.yaml"), [], profile)
    costs = plan.load_costs()
    device = plan.device_for(config, costs)
    made = plan.make_plan(config, plan.expand(config, [target]), device)
    total = made.total
    assert not made.unknown, f"{target}: dataset sizes unknown to the plan: {made.unknown}"
    disk = sum(plan.disk(config, made, costs).values())
    return [f"{total.runs:,}", f"{total.seconds / 3600:,.1f}", plan._bytes(disk)], device


@pytest.fixture
def readme(monkeypatch) -> str:
    monkeypatch.chdir(REPO)  # the plan reads config.yaml and the profile's overlays from here
    return (REPO / "README.md").read_text()


def test_every_number_of_the_cost_table_is_the_plans(readme):
    rows = cost_rows(readme)
    targets = [target_of(row[0]) for row in rows]
    assert ("all", DEMO) in targets and ("all", None) in targets, f"the table lost the demo or `all`: {targets}"
    wrong = []
    for row, (target, profile) in zip(rows, targets):
        want, device = computed(target, profile)
        if row[1:] != want:
            wrong.append(f"{row[0]}: README says {row[1:]}, the plan {want}")
        if profile == DEMO:
            assert device["name"] == "cpu" and device["status"] == "measured", device["name"]
    assert not wrong, "README.md's cost table disagrees with robust_transfer.plan:\n" + "\n".join(wrong)


def test_the_readme_says_whether_the_paper_hours_are_measured(readme):
    """The paper's hours come from the costs file's default device: while that is an estimate the
    README must say ESTIMATE; once a GPU is measured, the sentence must change with it."""
    _, device = computed("figures/table2.md", None)
    says_estimate = "**ESTIMATE**: no GPU has measured this code yet" in " ".join(readme.split())
    assert says_estimate == (device["status"] != "measured"), device


def test_the_readme_limit_is_the_configs(readme):
    """The README's `cost.max_device_hours` (24 in `config.yaml`) is config.yaml's."""
    limit = plan.load_config(Path("config.yaml"), [])["cost"]["max_device_hours"]
    readme = " ".join(readme.split())  # sentences wrap anywhere
    said = re.search(r"`cost\.max_device_hours` \((\d+) in `config\.yaml`\)", readme)
    assert said, "README.md no longer states cost.max_device_hours"
    assert float(said[1]) == limit
    assert f"Above {limit:g} device-hours" in readme


def test_a_user_reads_what_to_run_and_its_cost_before_the_science(readme):
    """The two commands, then what to run, what it costs and where, then safety; the science
    after. One machine's measurements live in docs/ (docs/demo.md), never as the README's claims."""
    sections = re.findall(r"^## (.+)$", readme, flags=re.M)
    assert sections[:4] == ["What to run", "What it costs", "Where to run it", "Safe by default"], sections
    lines = readme.splitlines()
    assert next(i for i, line in enumerate(lines) if line == "## What it costs") < 60
    assert len(lines) < 300
    assert "4 min 47 s" not in readme and "287 s" not in readme  # the development VM's demo time
    assert "docs/demo.md" in readme
