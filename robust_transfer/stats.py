"""The run table and its summaries: one number per run, means with seeded bootstrap CIs, and
seed-paired deltas."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from .grid import size_key, source_ks

RUN_KEYS = ["dataset", "source", "k", "size", "seed"]
DELTA = " - "  # joins the two sides of a paired delta's name: "l2_3 - natural"


def is_delta(name) -> bool:
    return DELTA in str(name)


METRIC_COLUMNS = ["epoch", "test_acc", "test_loss", "train_acc", "train_loss", "time", "lr"]


def read_runs(paths) -> pd.DataFrame:
    """The tidy run table: one row per (run, logged epoch), from run tables (a run's metrics
    CSV, or a table of many runs such as the authors' converted logs). A file that is not a
    run table fails naming it."""
    frames = [_run_table(p) for p in paths]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=RUN_KEYS + METRIC_COLUMNS)


NEEDED = RUN_KEYS + ["epoch", "test_acc", "test_loss", "train_loss", "n", "classes"]


def _run_table(path) -> pd.DataFrame:
    fix = "delete it (or run snakemake --forcerun on it) so that its run is made again"
    try:
        table = pd.read_csv(path, dtype={"size": str})
    except (ValueError, OSError, pd.errors.ParserError) as err:
        raise ValueError(f"{path}: not a readable run table ({err}); {fix}") from None
    missing = [c for c in NEEDED if c not in table.columns]
    bad = (
        table[["epoch", "test_acc"]].apply(pd.to_numeric, errors="coerce").isna().any(axis=None)
        if not missing
        else False
    )
    if missing or bad or table.empty:
        why = f"lacks columns {missing}" if missing else "has no rows" if table.empty else "has non-numeric values"
        raise ValueError(f"{path}: not a run table, it {why}; {fix}")
    return table


def select(runs: pd.DataFrame, selection: dict) -> pd.DataFrame:
    """The rows of a figure's selection (grid.figure_selection), with every seed they have."""
    keep = pd.Series(False, index=runs.index)
    base = runs["dataset"].isin(selection["datasets"]) & runs["size"].isin([str(s) for s in selection["sizes"]])
    for source in selection["sources"]:
        keep |= base & (runs["source"] == source) & runs["k"].isin(source_ks(selection, source))
    return runs[keep]


def flag_collapsed(runs: pd.DataFrame, margin: float = 1.5) -> pd.DataFrame:
    """Add `collapsed`: the run's final test accuracy is at most `margin` x chance (100 /
    classes), or some logged loss is not finite. Such runs diverged (lr 0.1, std-1 head)."""
    last = runs.sort_values("epoch").groupby(RUN_KEYS, sort=False).tail(1).set_index(RUN_KEYS)
    near_chance = last["test_acc"] <= margin * 100.0 / last["classes"]
    losses = runs[["test_loss", "train_loss"]].to_numpy(dtype=float)
    bad = pd.Series(~np.isfinite(losses).all(axis=1), index=runs.index).groupby([runs[k] for k in RUN_KEYS]).any()
    flag = (near_chance | bad.reindex(near_chance.index).fillna(False)).rename("collapsed")
    return runs.drop(columns="collapsed", errors="ignore").join(flag, on=RUN_KEYS)


def per_run(runs: pd.DataFrame, metric: str, epochs: list[int] | None = None) -> pd.DataFrame:
    """One value per run (column `value`): `final` logged epoch, `best` logged epoch, or, for
    metric `epoch`, one row per run and listed epoch (column `epoch`)."""
    keys = RUN_KEYS + ["n", "collapsed"]
    if metric == "final":
        rows = runs.sort_values("epoch").groupby(RUN_KEYS, sort=False).tail(1)
    elif metric == "best":
        rows = runs.loc[runs.groupby(RUN_KEYS, sort=False)["test_acc"].idxmax()]
    elif metric == "epoch":
        rows = runs[runs["epoch"].isin(epochs)]
        keys = keys + ["epoch"]
    else:
        raise ValueError(f"metric {metric!r}: use final, best or epoch")
    return rows[keys + ["test_acc"]].rename(columns={"test_acc": "value"}).reset_index(drop=True)


def bootstrap_ci(values, seed: int = 0, resamples: int = 1000, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean (seaborn's band, as the authors' plots), seeded.
    Fewer than two values, or all equal: no interval (nan, nan) or (v, v)."""
    from scipy.stats import bootstrap  # here: scipy.stats costs 0.6 s to import, and only aggregation needs it

    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return float("nan"), float("nan")
    if np.all(values == values[0]):
        return float(values[0]), float(values[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns on tiny samples; the interval is still right
        ci = bootstrap(
            (values,),
            np.mean,
            n_resamples=resamples,
            confidence_level=level,
            method="percentile",
            rng=np.random.default_rng(seed),
        ).confidence_interval
    return float(ci.low), float(ci.high)


COUNTS = ["runs", "collapsed", "excluded", "expected"]  # per cell of a summary, beside mean and CI


def summarize(
    values: pd.DataFrame, by: list[str], seed: int = 0, resamples: int = 1000, include_collapsed: bool = True
) -> pd.DataFrame:
    """Mean and bootstrap CI of `value` per group, with its counts: runs averaged, collapsed runs
    among them or left out (include_collapsed: False), and excluded."""
    rows = []
    for key, g in values.groupby(by, sort=False, dropna=False):  # NaN keys: a published lr unknown
        collapsed = g["collapsed"].astype(bool)
        used = g if include_collapsed else g[~collapsed]
        low, high = bootstrap_ci(used["value"], seed, resamples)
        rows.append(
            dict(
                zip(by, key if isinstance(key, tuple) else (key,)),
                mean=used["value"].mean(),
                ci_low=low,
                ci_high=high,
                runs=len(used),
                collapsed=int(collapsed.sum()),
                excluded=len(g) - len(used),
            )
        )
    out = pd.DataFrame(rows, columns=by + ["mean", "ci_low", "ci_high", *COUNTS[:3]])
    return sort_sizes(out)


def counts(summary: pd.DataFrame) -> dict[str, str | int]:
    """A summary's counts in words (report labels): points, runs per point against the grid's
    seeds, collapsed runs, points short of seeds."""
    if summary.empty:
        return {"points": 0}
    runs, seeds = summary["runs"], summary["expected"]
    return {
        "points": len(summary),
        "runs per point": f"{runs.min()}" if runs.min() == runs.max() else f"{runs.min()}-{runs.max()}",
        "seeds (grid)": f"{int(seeds.min())}"
        if seeds.min() == seeds.max()
        else f"{int(seeds.min())}-{int(seeds.max())}",
        "collapsed runs": int(summary["collapsed"].sum()),
        "points short of seeds": int((runs < seeds).sum()),
    }


def paired_delta(values: pd.DataFrame, by: str, a, b) -> pd.DataFrame:
    """value(a) - value(b) of runs that share everything else (dataset, size, seed, ...): the
    same images, so the deltas are paired. `by` is "source" or "k". A pair counts as collapsed if
    either run is."""
    keys = [c for c in values.columns if c not in (by, "value", "collapsed")]
    both = values[values[by] == a].merge(values[values[by] == b], on=keys, suffixes=("_a", "_b"))
    out = both[keys].assign(
        value=both["value_a"] - both["value_b"],
        collapsed=both["collapsed_a"].astype(bool) | both["collapsed_b"].astype(bool),
    )
    out[by] = f"{a}{DELTA}{b}"
    return out


def sort_sizes(df: pd.DataFrame) -> pd.DataFrame:
    if "size" not in df:
        return df
    keys = ["dataset", "_o"] if "dataset" in df else ["_o"]
    return (
        df.assign(_o=df["size"].map(size_key))
        .sort_values(keys, kind="stable")
        .drop(columns="_o")
        .reset_index(drop=True)
    )


def figure_summary(runs: pd.DataFrame, spec: dict, seed: int = 0, include_collapsed: bool = True) -> pd.DataFrame:
    """The numbers a figure or table plots, from the tidy table of exactly its runs; `expected`
    is the number of seeds the grid defines for the cell (spec["seeds"] by size), so a cell
    built from fewer runs says so."""
    metric = spec.get("metric", "final")
    values = per_run(runs, metric, spec.get("epochs"))
    delta = spec.get("delta")
    by = ["dataset", "source", "k", "size", "n"] + (["epoch"] if metric == "epoch" else [])
    if delta and spec["kind"] == "delta":
        values = paired_delta(values, delta["by"], delta["a"], delta["b"])
    out = summarize(values, by, seed, include_collapsed=include_collapsed)
    if delta and spec["kind"] == "table":  # tables also get the paired delta as extra rows
        d = summarize(
            paired_delta(values, delta["by"], delta["a"], delta["b"]), by, seed, include_collapsed=include_collapsed
        )
        out = sort_sizes(pd.concat([out, d], ignore_index=True))
    seeds = spec.get("seeds") or {}
    out["expected"] = out["size"].map(lambda size: seeds.get(str(size), float("nan")))
    return out


def compare(ours: pd.DataFrame, theirs: pd.DataFrame) -> pd.DataFrame:
    """Per cell of a figure: our mean, the authors', the difference, and whether the two 95 %
    CIs overlap (NaN where either side has fewer than two runs)."""
    keys = [c for c in ours.columns if c not in ("n", "mean", "ci_low", "ci_high", *COUNTS)]
    cols = ["mean", "ci_low", "ci_high", "runs"]
    both = ours[keys + cols].merge(theirs[keys + cols], on=keys, how="outer", suffixes=("_ours", "_published"))
    both["difference"] = both["mean_ours"] - both["mean_published"]
    overlap = (both["ci_low_ours"] <= both["ci_high_published"]) & (both["ci_low_published"] <= both["ci_high_ours"])
    known = both[["ci_low_ours", "ci_high_ours", "ci_low_published", "ci_high_published"]].notna().all(axis=1)
    both["ci_overlap"] = overlap.where(known)
    return sort_sizes(both)
