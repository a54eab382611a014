"""The statistics behind every figure: per-run values, bootstrap CIs, paired deltas and the
exclusion of collapsed (diverged) runs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import bootstrap

from robust_transfer import stats

# --- bootstrap_ci -----------------------------------------------------------------------


def test_bootstrap_ci_known_case():
    """[1..5]: the percentile CI of the mean lies in [1, 5] and contains the mean 3."""
    low, high = stats.bootstrap_ci([1, 2, 3, 4, 5], seed=0, resamples=1000)
    assert 1 <= low < 3 < high <= 5


def test_bootstrap_ci_equals_scipy():
    """Exactly scipy's percentile bootstrap of the mean with the same seeded rng."""
    values = [1.0, 2.0, 3.0, 4.0, 5.0]
    for seed in (0, 3):
        ref = bootstrap(
            (np.array(values),),
            np.mean,
            n_resamples=1000,
            confidence_level=0.95,
            method="percentile",
            rng=np.random.default_rng(seed),
        ).confidence_interval
        assert stats.bootstrap_ci(values, seed=seed, resamples=1000) == (float(ref.low), float(ref.high))


def test_bootstrap_ci_level():
    """A lower confidence level gives a narrower interval inside the 95% one."""
    values = [50.1, 52.3, 49.8, 55.0, 51.2, 53.3, 48.7, 50.0, 54.1, 52.2]
    l95, h95 = stats.bootstrap_ci(values, seed=0, level=0.95)
    l50, h50 = stats.bootstrap_ci(values, seed=0, level=0.5)
    assert l95 <= l50 < np.mean(values) < h50 <= h95


def test_bootstrap_ci_single_value_is_nan():
    low, high = stats.bootstrap_ci([42.0])
    assert math.isnan(low) and math.isnan(high)
    low, high = stats.bootstrap_ci([])
    assert math.isnan(low) and math.isnan(high)


def test_bootstrap_ci_equal_values():
    """All runs equal: a zero-width interval at that value (scipy would fail on it)."""
    assert stats.bootstrap_ci([7.5, 7.5, 7.5]) == (7.5, 7.5)


def test_bootstrap_ci_seeded():
    """Same seed -> same interval (figures reproduce); another seed may differ."""
    values = np.random.default_rng(1).normal(60, 5, size=10)
    assert stats.bootstrap_ci(values, seed=4) == stats.bootstrap_ci(values, seed=4)
    assert stats.bootstrap_ci(values, seed=4) != stats.bootstrap_ci(values, seed=5)


def test_bootstrap_ci_accepts_series():
    s = pd.Series([1, 2, 3, 4, 5], index=[10, 11, 12, 13, 14])
    assert stats.bootstrap_ci(s, seed=0) == stats.bootstrap_ci([1, 2, 3, 4, 5], seed=0)


# --- per-run table ----------------------------------------------------------------------


def _log(
    dataset="cifar10",
    source="natural",
    k=3,
    size="100",
    seed=1,
    accs=(30.0, 50.0, 40.0),
    epochs=(1, 21, 100),
    classes=10,
    losses=None,
):
    losses = losses or [1.0] * len(accs)
    return pd.DataFrame(
        {
            "dataset": dataset,
            "source": source,
            "k": k,
            "size": size,
            "seed": seed,
            "n": 100 if size == "100" else 50000,
            "classes": classes,
            "epoch": list(epochs),
            "test_acc": list(accs),
            "test_loss": list(losses),
            "train_acc": list(accs),
            "train_loss": [1.0] * len(accs),
            "time": [1.0] * len(accs),
            "lr": [0.1] * len(accs),
        }
    )


@pytest.fixture
def runs() -> pd.DataFrame:
    good = _log(seed=1, accs=(30.0, 50.0, 40.0))
    chance = _log(seed=2, accs=(12.0, 20.0, 10.0))  # final 10% on 10 classes: chance
    nan_loss = _log(seed=3, accs=(30.0, 45.0, 44.0), losses=[1.0, float("nan"), 1.0])
    inf_loss = _log(source="l2_3", seed=1, accs=(30.0, 60.0, 70.0), losses=[1.0, 1.0, float("inf")])
    near = _log(source="l2_3", seed=2, accs=(30.0, 20.0, 15.0))  # 15 <= 1.5 x 10: collapsed
    above = _log(source="l2_3", seed=3, accs=(30.0, 20.0, 15.5))  # just above the margin
    # shuffled rows: nothing may depend on the file order
    return (
        pd.concat([good, chance, nan_loss, inf_loss, near, above], ignore_index=True)
        .sample(frac=1, random_state=0)
        .reset_index(drop=True)
    )


def _flags(flagged):
    return flagged.groupby(["source", "seed"])["collapsed"].agg(lambda s: set(s.tolist()))


def test_flag_collapsed(runs):
    """Final test_acc <= 1.5 x chance, or any non-finite loss, flags the whole run; good runs
    (even with a low middle epoch) are not flagged."""
    flagged = stats.flag_collapsed(runs)
    assert len(flagged) == len(runs)
    f = _flags(flagged)
    assert f[("natural", 1)] == {False}
    assert f[("natural", 2)] == {True}  # at chance
    assert f[("natural", 3)] == {True}  # nan loss mid-run, fine at the end
    assert f[("l2_3", 1)] == {True}  # inf loss at the end despite 70%
    assert f[("l2_3", 2)] == {True}
    assert f[("l2_3", 3)] == {False}


def test_flag_collapsed_margin_and_classes():
    """The threshold scales with the class count: 15% is collapsed on CIFAR-10 (margin 1.5)
    but not on CIFAR-100; margin 1 flags only at or below chance."""
    r10 = _log(seed=1, accs=(15.0,), epochs=(100,), classes=10)
    r100 = _log(dataset="cifar100", seed=1, accs=(15.0,), epochs=(100,), classes=100)
    flagged = stats.flag_collapsed(pd.concat([r10, r100], ignore_index=True))
    assert flagged.set_index("dataset")["collapsed"].to_dict() == {"cifar10": True, "cifar100": False}
    assert not stats.flag_collapsed(r10, margin=1.0)["collapsed"].any()


def test_flag_collapsed_replaces_existing_column(runs):
    """Re-flagging replaces a stale `collapsed` column rather than duplicating it."""
    once = stats.flag_collapsed(runs)
    twice = stats.flag_collapsed(once.assign(collapsed=False))
    assert list(twice.columns).count("collapsed") == 1
    assert twice["collapsed"].tolist() == once["collapsed"].tolist()


def test_per_run_final_best_epoch(runs):
    flagged = stats.flag_collapsed(runs)
    final = stats.per_run(flagged, "final").set_index(["source", "seed"])["value"]
    assert len(final) == 6
    assert final[("natural", 1)] == 40.0  # last logged epoch (100), not the best
    assert final[("l2_3", 3)] == 15.5
    best = stats.per_run(flagged, "best").set_index(["source", "seed"])["value"]
    assert best[("natural", 1)] == 50.0
    assert best[("l2_3", 1)] == 70.0
    ep = stats.per_run(flagged, "epoch", [1, 100])
    assert len(ep) == 12
    got = ep.set_index(["source", "seed", "epoch"])["value"]
    assert got[("natural", 1, 1)] == 30.0 and got[("natural", 1, 100)] == 40.0
    assert set(stats.per_run(flagged, "final").columns) == {
        "dataset",
        "source",
        "k",
        "size",
        "seed",
        "n",
        "collapsed",
        "value",
    }
    with pytest.raises(ValueError):
        stats.per_run(flagged, "median")


def test_summarize_averages_collapsed_runs_by_default_and_counts_them(runs):
    """By default every run is averaged, as the authors did, and each cell counts its collapsed
    runs; include_collapsed=False leaves them out of the mean and CI, counted as excluded."""
    values = stats.per_run(stats.flag_collapsed(runs), "final")
    out = stats.summarize(values, ["dataset", "source", "k", "size", "n"], include_collapsed=False).set_index("source")
    assert out.loc["natural", "runs"] == 1 and out.loc["natural", "excluded"] == 2
    assert out.loc["natural", "collapsed"] == 2
    assert out.loc["natural", "mean"] == 40.0
    assert math.isnan(out.loc["natural", "ci_low"])  # one run: no interval
    assert out.loc["l2_3", "runs"] == 1 and out.loc["l2_3", "excluded"] == 2
    assert out.loc["l2_3", "mean"] == 15.5

    inc = stats.summarize(values, ["dataset", "source", "k", "size", "n"]).set_index("source")
    assert inc.loc["natural", "runs"] == 3 and inc.loc["natural", "excluded"] == 0
    assert inc.loc["natural", "collapsed"] == 2
    assert inc.loc["natural", "mean"] == pytest.approx((40.0 + 10.0 + 44.0) / 3)
    assert inc.loc["l2_3", "mean"] == pytest.approx((70.0 + 15.0 + 15.5) / 3)
    lo, hi = stats.bootstrap_ci(values[values.source == "natural"]["value"], 0, 1000)
    assert (inc.loc["natural", "ci_low"], inc.loc["natural", "ci_high"]) == (lo, hi)


def test_summarize_sorts_sizes_full_last():
    """Summaries list sizes in numeric order with "full" last (sort_sizes' purpose)."""
    values = pd.DataFrame(
        {
            "dataset": "d",
            "size": ["full", "1600", "200", "full", "200"],
            "value": [1.0, 2.0, 3.0, 4.0, 5.0],
            "collapsed": False,
        }
    )
    out = stats.summarize(values, ["dataset", "size"])
    assert out["size"].tolist() == ["200", "1600", "full"]
    assert out.set_index("size").loc["200", "mean"] == 4.0


# --- paired deltas ----------------------------------------------------------------------


def _values():
    rows = []
    for seed, (a, b) in enumerate([(60.0, 55.0), (62.0, 50.0), (58.0, 59.0)]):
        for source, v in (("l2_3", a), ("natural", b), ("linf_8", 1.0)):
            rows.append(
                dict(
                    dataset="cifar10",
                    source=source,
                    k=3,
                    size="100",
                    n=100,
                    seed=20000000 + 100000 * seed,
                    value=v,
                    collapsed=(source == "natural" and seed == 2),
                )
            )
    rows.append(
        dict(dataset="cifar10", source="l2_3", k=3, size="100", n=100, seed=99, value=70.0, collapsed=False)
    )  # unpaired
    return pd.DataFrame(rows)


def test_paired_delta_by_source():
    """a - b per seed; unpaired runs dropped; a pair is collapsed if either run is."""
    d = stats.paired_delta(_values(), "source", "l2_3", "natural")
    got = d.set_index("seed")
    assert sorted(got.index) == [20000000, 20100000, 20200000]
    assert got.loc[20000000, "value"] == 5.0
    assert got.loc[20100000, "value"] == 12.0
    assert got.loc[20200000, "value"] == -1.0
    assert got["collapsed"].to_dict() == {20000000: False, 20100000: False, 20200000: True}
    assert set(d["source"]) == {"l2_3 - natural"}
    assert {"dataset", "k", "size", "n", "seed"} <= set(d.columns)


def test_paired_delta_by_k():
    """Paired by everything but k: the same images (dataset, size, seed) for k=3 and k=1."""
    v = _values()
    v = v[v.source == "l2_3"]
    v1 = v.assign(k=1, value=v["value"] - 2.5)
    d = stats.paired_delta(pd.concat([v, v1], ignore_index=True), "k", 3, 1)
    assert len(d) == 4
    assert (d["value"] == 2.5).all()
    assert set(d["k"]) == {"3 - 1"}


def test_paired_delta_does_not_pair_across_sizes():
    """Runs of different sizes (different images) never pair."""
    v = _values()
    v.loc[v.source == "natural", "size"] = "200"
    assert stats.paired_delta(v, "source", "l2_3", "natural").empty


# --- a delta figure's numbers, end to end ------------------------------------------------


def _delta_runs():
    """Two sources x 6 seeds, logged at epochs 1 and 2, with one unpaired extra run."""
    rows = []
    a = [61.0, 64.0, 58.0, 66.0, 60.0, 63.0]
    b = [55.0, 50.0, 59.0, 52.0, 57.0, 51.0]
    for source, finals in (("l2_3", a), ("natural", b)):
        for i, final in enumerate(finals):
            for epoch, acc in ((1, final - 20), (2, final)):
                rows.append(_row(source, 20000000 + 100000 * i, epoch, acc))
    rows += [_row("l2_3", 99, 1, 10.0), _row("l2_3", 99, 2, 99.0)]  # no natural partner
    return pd.DataFrame(rows), np.array(a) - np.array(b)


def _row(source, seed, epoch, acc):
    return dict(
        dataset="cifar10", source=source, k=3, size="100", n=100, seed=seed, epoch=epoch, test_acc=acc,
        test_loss=1.0, train_acc=90.0, train_loss=0.1, classes=10, epochs=2,
    )  # fmt: skip


SPEC = {"kind": "delta", "metric": "final", "delta": {"by": "source", "a": "l2_3", "b": "natural"}}


def test_delta_figure_mean_and_ci_are_those_of_the_paired_differences():
    """The mean of seed-paired differences and the bootstrap CI of that mean, as numbers: not
    a difference of unpaired means (the extra l2_3 run at 99 % would move that) and not a CI
    built from the two sources' own spreads."""
    runs, diffs = _delta_runs()
    out = stats.figure_summary(stats.flag_collapsed(runs), SPEC, seed=0)
    assert len(out) == 1
    row = out.iloc[0]
    assert row["source"] == "l2_3 - natural" and row["runs"] == 6
    assert row["mean"] == pytest.approx(diffs.mean()) == pytest.approx(np.mean([6, 14, -1, 14, 3, 12]))
    ref = bootstrap((diffs,), np.mean, n_resamples=1000, method="percentile", rng=np.random.default_rng(0))
    assert (row["ci_low"], row["ci_high"]) == (ref.confidence_interval.low, ref.confidence_interval.high)


def test_the_bootstrap_seed_reaches_the_figures_ci():
    runs, diffs = _delta_runs()
    flagged = stats.flag_collapsed(runs)
    s0 = stats.figure_summary(flagged, SPEC, seed=0).iloc[0]
    s0_again = stats.figure_summary(flagged, SPEC, seed=0).iloc[0]
    s7 = stats.figure_summary(flagged, SPEC, seed=7).iloc[0]
    assert (s0["ci_low"], s0["ci_high"]) == (s0_again["ci_low"], s0_again["ci_high"])
    assert (s0["ci_low"], s0["ci_high"]) != (s7["ci_low"], s7["ci_high"])
    assert (s7["ci_low"], s7["ci_high"]) == stats.bootstrap_ci(diffs, seed=7)


def test_best_epoch_metric_picks_each_runs_maximum():
    runs, _ = _delta_runs()
    runs.loc[(runs.epoch == 1) & (runs.source == "natural"), "test_acc"] = 80.0  # epoch 1 best
    out = stats.figure_summary(stats.flag_collapsed(runs), {**SPEC, "metric": "best"}, seed=0).iloc[0]
    a_best = np.array([61.0, 64.0, 58.0, 66.0, 60.0, 63.0])
    assert out["mean"] == pytest.approx((a_best - 80.0).mean())


@pytest.mark.parametrize(
    "content, why",
    [
        ("epoch,test_acc\n1,50\n", "lacks columns"),
        ("", "not a readable run table"),
        ("\x00\x01garbage", "lacks columns"),
    ],
)
def test_a_corrupted_run_table_fails_naming_the_file(tmp_path, runs, content, why):
    good, bad = tmp_path / "good.csv", tmp_path / "bad.csv"
    runs.to_csv(good, index=False)
    bad.write_text(content)
    with pytest.raises(ValueError, match=f"{bad}: .*{why}.*made again"):
        stats.read_runs([good, bad])
    assert len(stats.read_runs([good])) == len(runs)


def test_bootstrap_ci_of_two_values_is_an_interval():
    """Two seeds are enough for a band (the demo's smallest cells): a finite interval between them."""
    low, high = stats.bootstrap_ci([50.0, 60.0], seed=0)
    assert 50.0 <= low < high <= 60.0


def test_counts_say_points_runs_seeds_and_collapsed_runs():
    """The report's labels of a summary: what a reader needs to trust a figure."""
    summary = pd.DataFrame({"runs": [3, 2, 3], "expected": [3, 3, 3], "collapsed": [0, 1, 0]})
    assert stats.counts(summary) == {
        "points": 3,
        "runs per point": "2-3",
        "seeds (grid)": "3",
        "collapsed runs": 1,
        "points short of seeds": 1,
    }
    assert stats.counts(summary.iloc[:0]) == {"points": 0}


def test_read_runs_of_no_files_is_an_empty_run_table():
    empty = stats.read_runs([])
    assert empty.empty and list(empty.columns) == stats.RUN_KEYS + stats.METRIC_COLUMNS


def test_flag_collapsed_threshold_is_margin_times_chance_exactly():
    """On 10 classes with margin 1.5 the threshold is 15.0 %: 15.0 is collapsed, 15.1 is not."""
    at = _log(seed=1, accs=(15.0,), epochs=(100,), classes=10)
    above = _log(seed=2, accs=(15.1,), epochs=(100,), classes=10)
    flagged = stats.flag_collapsed(pd.concat([at, above], ignore_index=True), margin=1.5)
    assert flagged.set_index("seed")["collapsed"].to_dict() == {1: True, 2: False}


def test_a_table_with_a_delta_has_both_sources_and_their_paired_difference():
    """A table (Table 7) lists each source's mean and, as extra rows, the seed-paired delta; a
    delta figure has the delta only."""
    runs, diffs = _delta_runs()
    flagged = stats.flag_collapsed(runs)
    table = stats.figure_summary(flagged, {**SPEC, "kind": "table"}, seed=0).set_index("source")
    assert set(table.index) == {"l2_3", "natural", "l2_3 - natural"}
    assert table.loc["l2_3 - natural", "mean"] == pytest.approx(diffs.mean())
    assert stats.figure_summary(flagged, SPEC, seed=0)["source"].tolist() == ["l2_3 - natural"]


def test_sort_sizes_groups_datasets_then_orders_sizes_full_last():
    """By dataset (in order), then size (numeric, "full" last), ties kept as they came; the
    columns are the frame's own and the index is fresh; a frame without datasets sorts by size."""
    frame = pd.DataFrame({"dataset": ["b", "a", "b", "a"], "size": ["full", "80", "20", "full"], "v": [1, 2, 3, 4]})
    out = stats.sort_sizes(frame)
    assert out[["dataset", "size"]].values.tolist() == [["a", "80"], ["a", "full"], ["b", "20"], ["b", "full"]]
    assert list(out.columns) == ["dataset", "size", "v"] and out.index.tolist() == [0, 1, 2, 3]
    assert stats.sort_sizes(frame.drop(columns="dataset"))["v"].tolist() == [3, 2, 1, 4]


def test_best_epoch_of_runs_read_from_several_files(tmp_path):
    """Run tables read from several files form one table with a fresh index: the best epoch is
    then one row per run, its maximum (duplicate row labels would pick every row)."""
    paths = []
    for seed, accs in [(1, (50.0, 40.0)), (2, (30.0, 60.0))]:
        paths.append(tmp_path / f"s{seed}.csv")
        _log(seed=seed, accs=accs, epochs=(1, 2)).to_csv(paths[-1], index=False)
    runs = stats.read_runs(paths)
    assert runs.index.tolist() == list(range(4))
    best = stats.per_run(stats.flag_collapsed(runs), "best")
    assert best.set_index("seed")["value"].to_dict() == {1: 50.0, 2: 60.0}


def test_bootstrap_ci_of_equal_values_is_that_value_exactly():
    assert stats.bootstrap_ci([0.1, 0.1, 0.1]) == (0.1, 0.1)  # not the mean's rounding, 0.10000000000000002
