"""The README's demo, run as written (the session fixture `demo`), shows learning: its numbers,
not only its files. Prints what it checks, so a CI log carries the demo's numbers."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import load_config

from robust_transfer import checkpoints, grid, stats

pytestmark = pytest.mark.slow
MINUTES = 3.5  # 210 s: the target for 2 cores since jobs share runner processes (README: 3 to 5 minutes)


def demo_numbers(root) -> dict:
    """From a finished demo: each run's final accuracy, and per target and source the mean at
    each n; collapsed runs counted with the demo's own margin."""
    config = load_config("config.demo.yaml")
    table = pd.read_csv(root / "results" / "runs.csv", dtype={"size": str})
    final = table.sort_values("epoch").groupby(stats.RUN_KEYS).tail(1)
    chance = {d: 100 / final.loc[final.dataset == d, "classes"].iloc[0] for d in final.dataset.unique()}
    final = final.assign(n_images=final["n"])  # images trained on ("full" included)
    by_source = final.groupby(["dataset", "source", "n_images"])["test_acc"].mean().unstack("n_images")
    largest = {d: g.loc[g.n_images == g.n_images.max(), "test_acc"].mean() for d, g in final.groupby("dataset")}
    return {
        "config": config,
        "final": final,
        "chance": chance,
        "largest": largest,
        "by_source": by_source,
        "collapsed": int(final["collapsed"].sum()),
    }


def test_the_readme_demo_shows_learning(demo, capsys):
    """On every target the mean final accuracy at the largest n is at least halfway from chance
    to 100 %; for every source, accuracy rises from the smallest n to the largest; at most 5 %
    of runs collapse; and the demo takes at most 3.5 minutes (50 % more allowed for a slower
    machine; the time is printed)."""
    got = demo_numbers(demo.root)
    final = got["final"]
    fig2b = pd.read_csv(demo.root / "results" / "figures" / "fig2b" / "summary.csv", dtype={"size": str})
    lines = [
        f"the README's demo: {demo.seconds:.0f} s, {len(final)} fine-tuning runs, {got['collapsed']} collapsed",
        got["by_source"].round(1).to_string(),
        *(f"{d}: mean {m:.1f} % at the largest n (chance {got['chance'][d]:.0f} %)" for d, m in got["largest"].items()),
        "Fig 2b (robust - natural, k=3, seed-paired; reported, not tuned for):",
        fig2b[["dataset", "source", "size", "mean", "ci_low", "ci_high", "runs"]].round(2).to_string(index=False),
    ]
    with capsys.disabled():  # into the CI log even when the test passes
        print("\n" + "\n".join(lines))
    for dataset, mean in got["largest"].items():
        chance = got["chance"][dataset]
        assert mean >= (chance + 100) / 2, f"{dataset}: {mean:.1f} % is not halfway from chance {chance:.0f} %"
    for (dataset, source), row in got["by_source"].iterrows():
        sizes = row.dropna()
        if len(sizes) > 1:
            assert sizes.iloc[-1] > sizes.iloc[0], f"{dataset}/{source}: no rise with n ({sizes.round(1).to_dict()})"
    assert got["collapsed"] <= 0.05 * len(final), f"{got['collapsed']} of {len(final)} runs collapsed"
    # 2-core machines vary: the same code took 287 s on one VM and 339 s on another (docs/demo.md);
    # a margin of 50 %, and the time is printed above. One process per job again (378 s on the
    # development VM) fails it.
    assert demo.seconds <= MINUTES * 60 * 1.5, f"the demo took {demo.seconds:.0f} s"


def test_every_band_of_the_demo_has_three_seeds(demo):
    """Every point of every drawn figure averages at least three seeds, and what each figure
    summarises is what its config expects (no run missing)."""
    config = load_config("config.demo.yaml")
    for fig in grid.in_all(config):
        if config["figures"][fig]["kind"] == "table":
            continue
        summary = pd.read_csv(demo.root / "results" / "figures" / fig / "summary.csv")
        assert (summary["runs"] >= 3).all(), (fig, summary[summary["runs"] < 3])
        assert (summary["runs"] == summary["expected"]).all(), (fig, summary)


def test_the_demo_sources_learn_and_attacks_hurt_the_robust_ones(demo):
    """Each pretrained source (the real pretrain_source jobs of the demo) ends well above chance
    on held-out source images (at least halfway from chance to 100 %), and every source trained
    with PGD is less accurate under that attack than clean."""
    config = load_config("config.demo.yaml")
    used = {run.source for run in grid.all_runs(config)}  # this demo's (the second demo's: test_salman_demo.py)
    trained = {name: spec["train"] for name, spec in config["sources"].items() if spec.get("train") and name in used}
    assert trained, "the demo pretrains no source"
    for name, spec in trained.items():
        meta = checkpoints.load(demo.root / "results" / "sources" / f"{name}.pt")[1]
        clean = float(meta["test_acc"])
        chance = 100 / len(config["datasets"][spec["dataset"]]["classes"])
        print(f"{name}: clean {clean:.1f} %" + (f", PGD {float(meta['adv_test_acc']):.1f} %" if spec["attack"] else ""))
        assert clean >= (chance + 100) / 2, f"{name}: {clean:.1f} % after pretraining"
        if spec["attack"]:
            assert float(meta["adv_test_acc"]) < clean, name
