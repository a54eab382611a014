"""A figure's lines and headline numbers for DVC (robust_transfer.metrics): the line names each
kind of figure gets, the x axis, and the numbers `dvc metrics show` lists."""

from __future__ import annotations

import csv

import pytest

from robust_transfer import metrics, stats


def summary(rows, epoch=False):
    """Summary rows as results/figures/<fig>/summary.csv holds them (every value a string)."""
    keys = (
        ["dataset", "source", "k", "size", "n"] + (["epoch"] if epoch else []) + ["mean", "ci_low", "ci_high", "runs"]
    )
    return [dict(zip(keys, map(str, row))) for row in rows]


def test_delta_name_is_the_stats_one():
    assert metrics.DELTA == stats.DELTA


def test_curves_by_source_end_at_the_largest_n_averaged_over_datasets():
    rows = summary(
        [
            ("a", "l2_3", 3, 100, 100, 50.0, 49, 51, 2),
            ("a", "l2_3", 3, "full", 500, 70.0, 69, 71, 1),
            ("a", "natural", 3, 100, 100, 40.0, 39, 41, 2),
            ("a", "natural", 3, "full", 500, 60.0, "", "", 1),
            ("b", "l2_3", 3, 100, 100, 30.0, 29, 31, 2),
            ("b", "l2_3", 3, "full", 900, 90.0, 89, 91, 1),
        ]
    )
    lines = metrics.figure_lines(rows)
    assert [(r["series"], r["x"]) for r in lines][:2] == [("a: l2_3", 100), ("a: l2_3", 500)]
    assert {r["line"] for r in lines} == {"l2_3", "natural"}
    assert metrics.figure_metrics(lines) == {"l2_3": 80.0, "natural": 60.0}


def test_deltas_are_averaged_over_n():
    rows = summary(
        [("a", "l2_3 - natural", 3, 100, 100, 4.0, 3, 5, 2), ("a", "l2_3 - natural", 3, 200, 200, 2.0, 1, 3, 2)]
    )
    assert metrics.figure_metrics(metrics.figure_lines(rows)) == {"l2_3 - natural": 3.0}


def test_block_figures_name_lines_by_k():
    by_k = summary([("a", "linf_8", k, 100, 100, 10.0 + k, "", "", 1) for k in (0, 1, 3, 9)])
    assert [r["line"] for r in metrics.figure_lines(by_k)] == ["k=0", "k=1", "k=3", "k=9"]
    delta = summary([("a", "linf_8", "3 - 1", 100, 100, 1.5, "", "", 1)])
    assert metrics.figure_metrics(metrics.figure_lines(delta)) == {"k=3 - 1": 1.5}
    # Table 7: one k per source (from scratch: k=16) names lines by source alone
    table = summary([("a", "natural", 3, 100, 100, 50.0, "", "", 1), ("a", "scratch", 16, 100, 100, 20.0, "", "", 1)])
    assert [r["line"] for r in metrics.figure_lines(table)] == ["natural", "scratch"]
    mixed = summary([("a", "l2_3", 1, 100, 100, 1.0, "", "", 1), ("a", "l2_3", 3, 100, 100, 2.0, "", "", 1)])
    mixed += summary([("a", "natural", 3, 100, 100, 3.0, "", "", 1)])
    assert [r["line"] for r in metrics.figure_lines(mixed)] == ["l2_3 k=1", "l2_3 k=3", "natural k=3"]


def test_epoch_figures_use_the_epoch_as_x(tmp_path):
    rows = summary([("a", "l2_3", 3, 3200, 3200, e, 50.0 + e, "", "", 10) for e in (150, 11, 81)], epoch=True)
    lines = metrics.figure_lines(rows)
    assert [r["x"] for r in lines] == [11, 81, 150]
    assert metrics.figure_metrics(lines) == {"l2_3": 200.0}
    metrics.write_lines(lines, tmp_path / "lines.csv")
    with open(tmp_path / "lines.csv", newline="") as f:
        assert next(csv.reader(f)) == metrics.LINE_COLUMNS


def test_missing_values_are_none():
    rows = summary([("a", "l2_3", 3, 100, 100, "", "", "", 0)])
    assert metrics.figure_metrics(metrics.figure_lines(rows)) == {"l2_3": None}
    assert metrics.figure_lines([]) == [] and metrics.figure_metrics([]) == {}


@pytest.mark.parametrize("fig", ["fig2a", "fig4a", "table2"])
def test_real_summary_columns(fig, tmp_path):
    """The columns stats.figure_summary writes are the ones figure_lines reads."""
    import pandas as pd

    runs = pd.DataFrame(
        [
            dict(dataset="a", source=s, k=k, size="10", n=10, seed=seed, epoch=1, test_acc=10.0 * seed, collapsed=False)
            for s in ("l2_3", "natural")
            for k in (1, 3)
            for seed in (1, 2)
        ]
    )
    spec = {"fig2a": {"kind": "curves"}, "fig4a": {"kind": "curves"}, "table2": {"kind": "table"}}[fig]
    spec = {
        **spec,
        "metric": "final",
        "delta": {"by": "source", "a": "l2_3", "b": "natural"} if fig == "table2" else None,
    }
    selected = runs[runs["k"] == 3] if fig != "fig4a" else runs[runs["source"] == "l2_3"]
    stats.figure_summary(selected, spec).to_csv(tmp_path / "summary.csv", index=False)
    lines = metrics.figure_lines(metrics.read_summary(tmp_path / "summary.csv"))
    expected = {"fig2a": {"l2_3", "natural"}, "fig4a": {"k=1", "k=3"}, "table2": {"l2_3", "natural", "l2_3 - natural"}}
    assert {r["line"] for r in lines} == expected[fig]
    numbers = metrics.figure_metrics(lines)
    assert numbers[min(expected[fig])] == pytest.approx(15.0)  # seeds 1 and 2 at 10 and 20
    assert numbers.get("l2_3 - natural", 0.0) == pytest.approx(0.0)
