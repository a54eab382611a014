"""Cost before work: an invocation that will train prints its runs, images, device-hours and
disk before its first job, and stops there above `cost.max_device_hours`, saying how to go on.
`snakemake figures/fig5c.pdf` used to start 972 runs (763 device-hours by the plan) without a
word. Real Snakemake runs of the real workflow."""

from __future__ import annotations

import subprocess

import pytest
from conftest import SNAKEMAKE, clone_results, copy_workflow, load_config

from robust_transfer import grid, plan


@pytest.mark.slow
def test_fig5c_stops_before_any_job_and_says_how_to_go_on(tmp_path):
    root = copy_workflow(tmp_path / "workflow")
    proc = subprocess.run(
        [*SNAKEMAKE, "figures/fig5c.pdf", "--cores", "1", "--config", "data={offline: true}"],
        cwd=root,
        capture_output=True,
        text=True,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    config = load_config()
    costs = plan.load_costs()
    text, hours = plan.summary(config, grid.figure_runs(config, "fig5c"), plan.device_for(config, costs), costs)
    assert text in out  # the plan's own numbers
    assert "972 fine-tuning runs" in text and round(hours) == 763
    assert "stopped before any job" in out and "cost.max_device_hours (24)" in out
    assert "--config 'cost={max_device_hours: 764}'" in out
    assert "python -m robust_transfer.plan figures/fig5c.pdf" in out
    assert not (root / "resources").exists() and not (root / "results").exists()  # no job ran


@pytest.mark.slow
def test_the_demo_prints_its_cost_first(demo):
    """The README's demo: the summary comes before the first job, with the CPU's measured rates."""
    out = demo.stdout
    config = load_config("config.demo.yaml")
    costs = plan.load_costs()
    device = plan.device_for(config, costs)
    assert device["name"] == "cpu"
    runs = grid.all_runs(config)
    sources = {r.source for r in runs}  # pretrained here, on digits 0-4
    datasets = {r.dataset for r in runs} | {config["sources"][s]["train"]["dataset"] for s in sources}
    text, _ = plan.summary(config, runs, device, costs, (datasets, sources))
    assert "Cost of this invocation; and 4 source pretraining jobs:\n" + text in out
    assert out.index("Cost of this invocation") < out.index("rule ")


@pytest.mark.slow
def test_a_limit_stops_a_small_rebuild_and_raising_it_goes_on(demo, tmp_path):
    root = clone_results(demo, tmp_path / "limit")
    run = grid.Run("digits", "natural", 3, "20", 20000000)
    for ext in (".csv", ".json"):
        (root / f"{run.path}{ext}").unlink()
    base = [*SNAKEMAKE, "--workflow-profile", "profiles/demo", f"{run.path}.json"]
    stopped = subprocess.run(
        [*base, "--config", "cost={max_device_hours: 0}"], cwd=root, capture_output=True, text=True
    )
    assert stopped.returncode != 0
    assert "1 fine-tuning runs (digits 1)" in stopped.stdout + stopped.stderr
    assert not (root / f"{run.path}.json").exists()
    went = subprocess.run(base, cwd=root, capture_output=True, text=True)
    assert went.returncode == 0, went.stderr[-3000:]
    assert (root / f"{run.path}.json").exists()


def test_gate_and_summary_numbers():
    assert plan.gate(10.0, 24) is None
    assert plan.gate(10.0, None) is None
    assert "about 25 device-hours" in plan.gate(25.2, 24, ["all"])
    assert "max_device_hours: 26" in plan.gate(25.2, 24, ["all"])
    config = load_config()
    costs = plan.load_costs()
    device = plan.device_entry(costs, "cpu")
    runs = [grid.Run("cifar10", "natural", 3, "100", 20000000)] * 2
    text, hours = plan.summary(config, runs, device, costs)
    one = plan.run_seconds_of(config, runs[0], device)
    assert hours * 3600 == 2 * one
    assert text.startswith("2 fine-tuning runs (cifar10 2): 20.0k training and 120.0k evaluation images")
