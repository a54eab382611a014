"""The cost plan: targets expand into the workflow's runs, images and hours add up, the costs file
is complete and honest about what is measured, and the module needs no torch."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO

from robust_transfer import datasets, grid, plan, recipes, sizes

# A device whose numbers are easy to check by hand: 100 images/s training (200 with k=0),
# 1,000 evaluating, 1 s per epoch, 10 s per run, at 32 px.
TOY = {
    "name": "toy",
    "status": "estimate",
    "basis": "round numbers",
    "input_size": 32,
    "train": {0: 200, 1: 100, 3: 100, 9: 100, 16: 100},
    "eval": 1000,
    "epoch_seconds": 1.0,
    "run_seconds": 10.0,
}


def test_fig5c_has_972_runs_by_dataset_and_n(paper_config):
    """Fig 5c: 6 datasets x 2 sources x k=1 x (10 seeds for 7 sizes, 5 for 2, 1 for full)."""
    runs = plan.expand(paper_config, ["figures/fig5c.pdf"])
    assert len(runs) == 972 == len(grid.figure_runs(paper_config, "fig5c"))
    p = plan.make_plan(paper_config, runs, TOY)
    assert p.total.runs == 972 and len(p.rows) == 6 * 10
    for (dataset, size), row in p.rows.items():
        assert row.runs == 2 * len(grid.seeds(paper_config, size)), (dataset, size)


def test_images_and_hours_add_up(paper_config):
    """Per row: n x epochs training images and test set x logged epochs evaluation images per
    run; the total is the sum of the rows; hours follow the model by hand for one row."""
    p = plan.make_plan(paper_config, plan.expand(paper_config, ["fig5c"]), TOY)
    total = plan.Row()
    for (dataset, size), row in p.rows.items():
        sched = recipes.schedule(paper_config["finetune"], size)
        n = sizes.train_size(paper_config, dataset) if size == "full" else int(size)
        test = sizes.test_size(paper_config, dataset)
        assert row.train_images == row.runs * n * sched["epochs"]
        assert row.eval_images == row.runs * test * len(sched["eval_epochs"])
        total.runs += row.runs
        total.train_images += row.train_images
        total.eval_images += row.eval_images
        total.seconds += row.seconds
    t = p.total
    assert (t.runs, t.train_images, t.eval_images) == (total.runs, total.train_images, total.eval_images)
    assert t.seconds == pytest.approx(total.seconds)
    # CIFAR-10, n = 100, k = 1 at 224 px (49 x the toy's 32 px pixels): 100 epochs, 6 evaluations
    seconds = 10 + 100 * (1 + 100 * 49 / 100) + 6 * 10000 * 49 / 1000
    assert p.rows["cifar10", "100"].seconds == pytest.approx(20 * seconds)


def test_all_is_every_run_of_the_workflow_once(paper_config):
    """`all` (and results/runs.csv) is grid.all_runs; figures overlap, runs count once; the
    authors' logs need no run; a single run's file is one run."""
    every = plan.expand(paper_config, ["all"])
    assert every == grid.all_runs(paper_config)
    assert plan.expand(paper_config, ["results/runs.csv"]) == every
    both = plan.expand(paper_config, ["figures/fig5c.pdf", "figures/fig5d.pdf", "fig5c"])
    assert len(both) == len(set(both)) < 972 * 2
    assert plan.expand(paper_config, ["figures/published/fig5c.pdf"]) == []
    assert plan.expand(paper_config, ["figures/compare/fig5c.pdf"]) == plan.expand(paper_config, ["fig5c"])
    one = plan.expand(paper_config, ["results/runs/svhn/l2_3/k3/n800/s20100000.csv"])
    assert one == [grid.Run("svhn", "l2_3", 3, "800", 20100000)]
    with pytest.raises(SystemExit, match="not a figure"):
        plan.expand(paper_config, ["figures/fig99.pdf"])


def test_test_sizes_are_the_official_splits(paper_config, demo_config):
    assert [datasets.LOADERS[x].test_size for x in ("cifar10", "cifar100", "svhn", "mnist", "fmnist", "kmnist")] == [
        10000,
        10000,
        26032,
        10000,
        10000,
        10000,
    ]
    assert sizes.test_size(paper_config, "caltech101") == 8677 - 30 * 101
    assert sizes.test_size(demo_config, "digits") == 269  # digits 5-9, 30 % of each class (rounded)


def test_run_minutes_grows_with_size_epochs_and_test_set():
    cfg = {"input_size": 32, "epochs": 100, "eval_epochs": [1, 21, 41, 61, 81, 100]}
    base = plan.run_minutes(cfg, 100, 10000, 3, TOY)
    assert base == pytest.approx((10 + 100 * (1 + 1) + 6 * 10) / 60)
    assert plan.run_minutes(cfg, 200, 10000, 3, TOY) > base
    assert plan.run_minutes({**cfg, "epochs": 150}, 100, 10000, 3, TOY) > base
    assert plan.run_minutes(cfg, 100, 26032, 3, TOY) > base
    assert plan.run_minutes(cfg, 100, 10000, 0, TOY) < base


def test_costs_file_is_complete_and_labelled():
    """Every device has a rate for every k the grid can use and says how it was obtained: a
    measurement with machine, command and date, or an estimate with its basis."""
    costs = plan.load_costs()
    assert costs["default"] in costs["devices"]
    for name, device in costs["devices"].items():
        assert device["status"] in ("measured", "estimate"), name
        if device["status"] == "measured":
            assert device["machine"] and device["command"] and device["date"], name
        else:
            assert "not" in device["basis"].lower() and "measure" in device["basis"].lower(), name
        assert {0, 1, 3, 9, 16} <= {int(k) for k in device["train"]}, name
        assert device["eval"] > 0 and device["input_size"] > 0, name
    assert set(costs["disk"]) >= {"run_csv_row_bytes", "run_json_bytes", "checkpoint_bytes", "resume_bytes"}


def test_command_line_imports_no_torch():
    """python -m robust_transfer.plan prints the table and totals, and never imports torch (the
    workflow may call it at parse time)."""
    code = (
        "import sys; from robust_transfer import plan; plan.main(['figures/fig5c.pdf']); "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "972 fine-tuning runs" in out and "| total | | 972 |" in out
    assert "ESTIMATE" in out  # the default device is not a measurement
    assert "| cifar10 | 100 | 20 |" in out and "disk:" in out
