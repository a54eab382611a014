"""The papers' claims checked against figure summaries: each verdict, single-run cells, the
unpaired source/against comparison, the errors and the tables. The summaries are made by
stats.figure_summary from small synthetic run tables, as the aggregate rule makes them."""

from __future__ import annotations

import logging
import math
import runpy
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from robust_transfer import claims, stats

REPO = Path(__file__).resolve().parents[1]
DELTA = {"kind": "delta", "metric": "final", "delta": {"by": "source", "a": "l2_3", "b": "natural"}}
CURVES = {"kind": "curves", "metric": "final"}
SEEDS = {"100": 5, "400": 5, "full": 1}


def _runs(gain: dict[tuple[str, str], float], seeds: dict[str, int] = SEEDS, noise: float = 0.5) -> pd.DataFrame:
    """A run table (one logged epoch per run) of natural and l2_3 on each (dataset, size) of
    `gain`: natural at 50 + noise, l2_3 at natural + gain + noise, per seed."""
    rng = np.random.default_rng(0)
    rows = []
    for (dataset, size), g in gain.items():
        for seed in range(seeds[size]):
            base = 50.0 + rng.normal(0, 2)
            for source, acc in (("natural", base), ("l2_3", base + g + rng.normal(0, noise))):
                rows.append(
                    {
                        "dataset": dataset,
                        "source": source,
                        "k": 3,
                        "size": size,
                        "seed": seed,
                        "n": 50000 if size == "full" else int(size),
                        "classes": 10,
                        "epoch": 100,
                        "test_acc": acc,
                        "test_loss": 1.0,
                        "train_loss": 1.0,
                    }
                )
    return stats.flag_collapsed(pd.DataFrame(rows))


def _summary(gain, spec=DELTA, seeds=SEEDS, noise=0.5) -> pd.DataFrame:
    """The summary CSV as the claims rule reads it back (sizes and k as pandas parses them)."""
    table = stats.figure_summary(_runs(gain, seeds, noise), {**spec, "seeds": seeds}, seed=0)
    return table


def _claim(**kw) -> dict:
    return {"id": "c", "text": "robust beats natural", "figure": "fig2b", "expect": "positive", **kw}


@pytest.fixture
def delta() -> pd.DataFrame:
    """cifar10 gains +5 everywhere; svhn: +5 at n=100, -5 at n=400, -8 at full (one seed);
    mnist: a gain of 0 with noise (its CI straddles 0)."""
    return _summary(
        {
            ("cifar10", "100"): 5.0,
            ("cifar10", "400"): 3.0,
            ("cifar10", "full"): 1.0,
            ("svhn", "100"): 5.0,
            ("svhn", "400"): -5.0,
            ("svhn", "full"): -8.0,
            ("mnist", "100"): 0.0,
        },
        noise=2.0,
    )


def test_summary_shape(delta):
    """The fixture is what the aggregate rule writes: a paired delta per dataset and size."""
    assert set(delta["source"]) == {"l2_3 - natural"}
    assert {"dataset", "source", "k", "size", "n", "mean", "ci_low", "ci_high", "runs", "expected"} <= set(delta)
    full = delta[delta["size"] == "full"]
    assert full["runs"].eq(1).all() and full["ci_low"].isna().all()


# --- verdicts ---------------------------------------------------------------------------


def test_supported_every_interval_above(delta):
    """Every cell's interval above 0: supported; the deciding cell is the weakest (lowest CI)."""
    out = claims.check(_claim(where={"dataset": "cifar10", "size": ["100", "400"]}), delta)
    assert out["verdict"] == "supported"
    assert out["cells"] == 2
    cells = delta[(delta["dataset"] == "cifar10") & delta["size"].isin(["100", "400"])]
    weakest = cells.loc[cells["ci_low"].idxmin()]
    assert out["ci_low"] == weakest["ci_low"] > 0
    assert out["value"] == weakest["mean"]
    assert f"size={weakest['size']}" in out["deciding"] and "dataset=cifar10" in out["deciding"]
    assert out["note"] == "2 of 2 cells > 0"


def test_contradicted_when_one_interval_wholly_below(delta):
    """One cell wholly below 0 contradicts the claim, whatever the others; it is the deciding cell."""
    out = claims.check(_claim(where={"dataset": ["cifar10", "svhn"], "size": ["100", "400"]}), delta)
    assert out["verdict"] == "contradicted"
    assert "dataset=svhn" in out["deciding"] and "size=400" in out["deciding"]
    assert out["ci_high"] < 0
    assert "3 of 4 cells > 0, 1 contradicted" in out["note"]


def test_inconclusive_when_an_interval_straddles(delta):
    row = delta[delta["dataset"] == "mnist"].iloc[0]
    assert row["ci_low"] < 0 < row["ci_high"]  # the fixture's premise
    out = claims.check(_claim(where={"dataset": ["mnist", "cifar10"], "size": "100"}), delta)
    assert out["verdict"] == "inconclusive"
    assert "dataset=mnist" in out["deciding"]
    assert (out["ci_low"], out["ci_high"]) == (row["ci_low"], row["ci_high"])
    assert "1 of 2 cells > 0, 1 inconclusive" in out["note"]


def test_negative_at_least_at_most(delta):
    """The other expectations: the same cells against other sides and thresholds."""
    svhn400 = {"dataset": "svhn", "size": "400"}
    assert claims.check(_claim(where=svhn400, expect="negative"), delta)["verdict"] == "supported"
    assert claims.check(_claim(where=svhn400, expect="positive"), delta)["verdict"] == "contradicted"
    cifar = {"dataset": "cifar10", "size": "100"}
    row = delta[(delta["dataset"] == "cifar10") & (delta["size"] == "100")].iloc[0]
    low, high = row["ci_low"], row["ci_high"]
    assert claims.check(_claim(where=cifar, expect={"at_least": low - 0.1}), delta)["verdict"] == "supported"
    assert claims.check(_claim(where=cifar, expect={"at_least": low}), delta)["verdict"] == "supported"  # >=
    assert claims.check(_claim(where=cifar, expect={"at_least": row["mean"]}), delta)["verdict"] == "inconclusive"
    assert claims.check(_claim(where=cifar, expect={"at_least": high + 0.1}), delta)["verdict"] == "contradicted"
    assert claims.check(_claim(where=cifar, expect={"at_most": high}), delta)["verdict"] == "supported"
    assert claims.check(_claim(where=cifar, expect={"at_most": low - 0.1}), delta)["verdict"] == "contradicted"
    out = claims.check(_claim(where=cifar, expect={"at_most": 10}), delta)
    assert out["expect"] == "<= 10"


def test_where_compares_as_strings(delta):
    """Sizes from YAML (100) match the summary's "100"; k 3 matches 3."""
    a = claims.check(_claim(where={"dataset": "cifar10", "size": [100, 400], "k": 3}), delta)
    b = claims.check(_claim(where={"dataset": ["cifar10"], "size": ["100", "400"], "k": "3"}), delta)
    assert a == b and a["cells"] == 2


def test_where_after_csv_round_trip(delta, tmp_path):
    """The script reads the summary back from CSV: the same verdicts."""
    delta.to_csv(tmp_path / "s.csv", index=False)
    back = pd.read_csv(tmp_path / "s.csv")
    claim = _claim(where={"dataset": ["cifar10", "svhn"], "size": [100, 400, "full"]})
    assert claims.check(claim, back) == claims.check(claim, delta)


# --- single runs ------------------------------------------------------------------------


def test_single_run_decides_on_its_mean(delta):
    """size full has one seed: no interval, its mean's sign decides and the row says so."""
    out = claims.check(_claim(where={"dataset": "cifar10", "size": "full"}), delta)
    assert out["verdict"] == "supported" and out["runs"] == 1
    assert math.isnan(out["ci_low"]) and math.isnan(out["ci_high"])
    assert claims.SINGLE in out["note"]
    out = claims.check(_claim(where={"dataset": "svhn", "size": "full"}), delta)
    assert out["verdict"] == "contradicted" and out["value"] < 0 and claims.SINGLE in out["note"]


def test_single_run_among_others(delta):
    """A single-run cell among intervals: counted, and said in the note."""
    out = claims.check(_claim(where={"dataset": "cifar10"}), delta)
    assert out["verdict"] == "supported" and out["cells"] == 3
    assert "single run: no interval in 1 of 3 cells" in out["note"]


def test_contradicted_prefers_an_interval_to_a_single_run(delta):
    """Two contradicting cells: the one with an interval is shown before the single run."""
    out = claims.check(_claim(where={"dataset": "svhn", "size": ["400", "full"]}), delta)
    assert out["verdict"] == "contradicted" and "size=400" in out["deciding"]


def _salman() -> pd.DataFrame:
    """Published Salman-like numbers: single runs (no CI), extra key columns."""
    rows = [
        ("cifar10", "full", "resnet50", 0.0, 97.63),
        ("cifar10", "full", "resnet50", 1.0, 98.68),
        ("aircraft", "full", "resnet50", 0.0, 86.57),
        ("aircraft", "full", "resnet50", 1.0, 86.08),
        ("cifar10", "fixed", "resnet50", 0.0, 81.31),
        ("cifar10", "fixed", "resnet50", 1.0, 95.53),
    ]
    df = pd.DataFrame(rows, columns=["dataset", "mode", "arch", "eps", "mean"])
    return df.assign(ci_low=float("nan"), ci_high=float("nan"), runs=1)


def test_single_run_published_source_against():
    """Salman's headline: robust vs eps 0, unpaired single runs: decided on the difference of
    the means; the extra key columns (mode, arch) select and name the cell."""
    s = _salman()
    claim = _claim(figure="e2", by="eps", source=1, against=0, where={"mode": "full", "dataset": "cifar10"})
    out = claims.check(claim, s)
    assert out["verdict"] == "supported"
    assert out["value"] == pytest.approx(98.68 - 97.63)
    assert out["deciding"] == "dataset=cifar10, mode=full, arch=resnet50, eps=1 - 0"
    assert out["note"] == f"1 of 1 cells 1 - 0 > 0; {claims.SINGLE}"
    out = claims.check({**claim, "where": {"mode": "full"}}, s)
    assert out["verdict"] == "contradicted" and "dataset=aircraft" in out["deciding"]
    out = claims.check(_claim(figure="e2", where={"mode": "fixed", "eps": 1}, expect={"at_least": 95}), s)
    assert out["verdict"] == "supported" and out["value"] == 95.53


# --- source / against on a curves figure -------------------------------------------------


@pytest.fixture
def curves() -> pd.DataFrame:
    """A curves summary (one row per source): l2_3 well above natural on cifar10, far below on
    svhn, about equal on mnist."""
    gain = {("cifar10", "100"): 10.0, ("svhn", "100"): -10.0, ("mnist", "100"): 0.0}
    return _summary(gain, CURVES, noise=0.3)


def test_source_against_intervals(curves):
    """Unpaired: supported only if the intervals do not overlap (l2_3 above), contradicted only if
    they do not overlap the other way; the interval shown is [low_a - high_b, high_a - low_b]."""
    claim = _claim(figure="fig2a", source="l2_3", against="natural")
    out = claims.check({**claim, "where": {"dataset": "cifar10"}}, curves)
    a = curves.set_index(["dataset", "source"]).loc[("cifar10", "l2_3")]
    b = curves.set_index(["dataset", "source"]).loc[("cifar10", "natural")]
    assert out["verdict"] == "supported"
    assert out["value"] == pytest.approx(a["mean"] - b["mean"])
    assert out["ci_low"] == pytest.approx(a["ci_low"] - b["ci_high"])
    assert out["ci_high"] == pytest.approx(a["ci_high"] - b["ci_low"])
    assert out["expect"] == "l2_3 - natural > 0"
    assert out["deciding"] == "dataset=cifar10, source=l2_3 - natural, k=3, size=100"
    assert claims.check({**claim, "where": {"dataset": "svhn"}}, curves)["verdict"] == "contradicted"
    assert claims.check({**claim, "where": {"dataset": "mnist"}}, curves)["verdict"] == "inconclusive"
    assert claims.check({**claim, "where": {"dataset": "svhn"}, "expect": "negative"}, curves)["verdict"] == (
        "supported"
    )


def test_source_against_needs_both_sides(curves):
    claim = _claim(figure="fig2a", source="l2_3", against="linf_4")
    with pytest.raises(ValueError, match=r"'c'.*fig2a.*source.*l2_3.*linf_4.*present: source: natural, l2_3"):
        claims.check(claim, curves)


def test_column_without_interval(delta):
    """Another column than mean: decided on its value alone."""
    out = claims.check(
        _claim(where={"dataset": "cifar10", "size": "100"}, column="runs", expect={"at_least": 5}), delta
    )
    assert out["verdict"] == "supported" and out["value"] == 5 and math.isnan(out["ci_low"])


# --- errors -----------------------------------------------------------------------------


def test_no_rows_is_one_clear_error(delta):
    """Naming the claim, its figure (and origin), the filter and the values present."""
    claim = _claim(id="l2_small", where={"dataset": "cifar100", "size": [100]})
    with pytest.raises(ValueError) as err:
        claims.check(claim, delta, origin="ours")
    msg = str(err.value)
    assert "'l2_small'" in msg and "fig2b (ours)" in msg and "cifar100" in msg
    assert "present: dataset: cifar10, mnist, svhn; size: 100, 400, full" in msg


def test_unknown_column_and_bad_claims(delta):
    with pytest.raises(ValueError, match="no column 'recipe'.*its columns"):
        claims.check(_claim(where={"recipe": "x"}), delta)
    with pytest.raises(ValueError, match="expect 'up'"):
        claims.check(_claim(expect="up"), delta)
    with pytest.raises(ValueError, match="needs a number"):
        claims.check(_claim(expect={"at_least": "high"}), delta)
    with pytest.raises(ValueError, match=r"unknown keys \['wher'\]"):
        claims.check(_claim(wher={"dataset": "cifar10"}), delta)
    with pytest.raises(ValueError, match="both `source` and `against`"):
        claims.check(_claim(source="l2_3"), delta)
    with pytest.raises(ValueError, match=r"lacks \['figure'\]"):
        claims.check({"id": "x", "text": "t", "expect": "positive"}, delta)


# --- tables -----------------------------------------------------------------------------


def test_table_rows_per_claim_and_origin(delta, curves):
    """Ours before published; a claim's `origins` limits it; a figure no origin has fails."""
    summaries = {
        ("published", "fig2b"): delta[delta["dataset"] != "mnist"],
        ("ours", "fig2b"): delta,
        ("ours", "fig2a"): curves,
    }
    cs = [
        _claim(id="a", where={"dataset": "cifar10"}),
        _claim(id="b", figure="fig2a", source="l2_3", against="natural", where={"dataset": "cifar10"}),
        _claim(id="c", where={"dataset": "svhn"}, origins=["published"]),
    ]
    t = claims.table(cs, summaries)
    assert t.columns.tolist() == claims.COLUMNS
    assert list(zip(t["id"], t["origin"])) == [("a", "ours"), ("a", "published"), ("b", "ours"), ("c", "published")]
    assert t["verdict"].tolist() == ["supported", "supported", "supported", "contradicted"]
    with pytest.raises(ValueError, match="'d'.*figure 'fig5c'.*given: \\['fig2a', 'fig2b'\\]"):
        claims.table([_claim(id="d", figure="fig5c")], summaries)


def test_a_claim_of_an_origin_not_in_the_table_is_listed_not_checked(delta):
    """A table of the published numbers only (figures/published/claims.md): a claim checked on
    ours only gets a row saying so, outside the count of checks; a wiring error still fails."""
    summaries = {("published", "fig2b"): delta}
    t = claims.table(
        [_claim(id="a", where={"dataset": "cifar10"}), _claim(id="ours_only", origins=["ours"])], summaries
    )
    assert t["verdict"].tolist() == ["supported", claims.NOT_CHECKED] and t["origin"].tolist() == ["published", "-"]
    md = claims.markdown(t)
    assert "1 checks: 1 supported, 0 inconclusive, 0 contradicted. (1 not checked" in md
    with pytest.raises(ValueError, match="'b'.*figure 'fig5c'"):
        claims.table([_claim(id="b", figure="fig5c", origins=["published"])], summaries)


def test_markdown(delta):
    t = claims.table(
        [
            _claim(id="a", text="robust | natural", where={"dataset": "cifar10", "size": "100"}),
            _claim(id="b", where={"dataset": "svhn", "size": "full"}),
        ],
        {("ours", "fig2b"): delta},
    )
    md = claims.markdown(t)
    lines = md.splitlines()
    assert lines[0].startswith("| claim | origin | figure | expect | verdict |")
    assert lines[1].startswith("|---|")
    assert len([x for x in lines if x.startswith("| **")]) == 2
    row = t.iloc[0]
    assert f"{row['value']:.2f} [{row['ci_low']:.2f}, {row['ci_high']:.2f}]" in lines[2]
    assert "robust \\| natural" in lines[2]  # a pipe in the text does not split the row
    assert "| supported |" in lines[2] and "| contradicted |" in lines[3]
    assert "(single run)" in lines[3]
    assert lines[-1] == "2 checks: 1 supported, 0 inconclusive, 1 contradicted."


def test_script(delta, curves, tmp_path, monkeypatch):
    """scripts/claims.py: summaries in figure order, ours and published, to CSV and Markdown."""
    for name in ("stdout", "stderr", "excepthook"):
        monkeypatch.setattr(sys, name, getattr(sys, name))  # to_log redirects them: restore after
    monkeypatch.setattr(logging.getLogger(), "handlers", list(logging.getLogger().handlers))
    (tmp_path / "ours").mkdir()
    (tmp_path / "pub").mkdir()
    delta.to_csv(tmp_path / "ours/fig2b.csv", index=False)
    curves.to_csv(tmp_path / "ours/fig2a.csv", index=False)
    delta.to_csv(tmp_path / "pub/fig2b.csv", index=False)
    curves.to_csv(tmp_path / "pub/fig2a.csv", index=False)
    smk = SimpleNamespace(
        config={"pack": {"runs": 1}},
        log=[str(tmp_path / "claims.log")],
        params=SimpleNamespace(
            figures=["fig2b", "fig2a"],
            claims=[
                _claim(id="a", where={"dataset": "cifar10", "size": [100, 400]}),
                _claim(id="b", figure="fig2a", source="l2_3", against="natural", where={"dataset": "svhn"}),
            ],
        ),
        input=SimpleNamespace(
            ours=[str(tmp_path / "ours/fig2b.csv"), str(tmp_path / "ours/fig2a.csv")],
            published=[str(tmp_path / "pub/fig2b.csv"), str(tmp_path / "pub/fig2a.csv")],
        ),
        output=SimpleNamespace(csv=str(tmp_path / "claims.csv"), md=str(tmp_path / "claims.md")),
    )
    runpy.run_path(str(REPO / "scripts/claims.py"), init_globals={"snakemake": smk})
    out = pd.read_csv(tmp_path / "claims.csv")
    assert list(zip(out["id"], out["origin"], out["verdict"])) == [
        ("a", "ours", "supported"),
        ("a", "published", "supported"),
        ("b", "ours", "contradicted"),
        ("b", "published", "contradicted"),
    ]
    assert (tmp_path / "claims.md").read_text() == claims.markdown(
        claims.table(
            smk.params.claims,
            {
                (o, f): pd.read_csv(tmp_path / d / f"{f}.csv")
                for o, d in (("ours", "ours"), ("published", "pub"))
                for f in ("fig2b", "fig2a")
            },
        )
    )
    smk.input.published = []  # no published numbers: ours only
    runpy.run_path(str(REPO / "scripts/claims.py"), init_globals={"snakemake": smk})
    assert pd.read_csv(tmp_path / "claims.csv")["origin"].tolist() == ["ours", "ours"]
    smk.input.ours = smk.input.ours[:1]
    with pytest.raises(ValueError, match="1 ours summaries for 2 figures"):
        runpy.run_path(str(REPO / "scripts/claims.py"), init_globals={"snakemake": smk})


def test_boundary_of_the_expected_side():
    """Every paired delta exactly 0: a zero-width interval at 0, which is not "> 0" (contradicts
    positive) but is ">= 0" (supports at_least 0) and "<= 0" (supports at_most 0)."""
    zero = _summary({("cifar10", "100"): 0.0}, noise=0.0)
    assert zero[["mean", "ci_low", "ci_high"]].iloc[0].tolist() == [0.0, 0.0, 0.0]
    assert claims.check(_claim(), zero)["verdict"] == "contradicted"
    assert claims.check(_claim(expect="negative"), zero)["verdict"] == "contradicted"
    assert claims.check(_claim(expect={"at_least": 0}), zero)["verdict"] == "supported"
    assert claims.check(_claim(expect={"at_most": 0}), zero)["verdict"] == "supported"
    assert claims.check(_claim(expect={"at_most": -0.1}), zero)["verdict"] == "contradicted"


def test_one_run_with_a_degenerate_interval_is_a_single_run():
    """A table that writes a single run's CI as its mean: still no interval (runs < 2)."""
    s = _salman().assign(ci_low=lambda d: d["mean"] - 1, ci_high=lambda d: d["mean"] + 1)
    out = claims.check(_claim(figure="e2", where={"mode": "fixed", "eps": 1}, expect={"at_least": 95}), s)
    assert out["verdict"] == "supported" and math.isnan(out["ci_low"]) and claims.SINGLE in out["note"]
