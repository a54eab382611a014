"""A study's figures and tables (Salman et al.): per cell (dataset, source, mode) the mean over
seeds at the best learning rate (they selected the learning rate per cell, on test accuracy),
against the source's epsilon, ImageNet top-1 or width; the headline table (best robust against
eps = 0), the architectures table and the peak table (per target, mode and architecture: the
source's and the transfer accuracy at each eps, best robust - eps 0 and the interior-peak margin).

One run's number is its best logged test accuracy (their code keeps the checkpoint of the best
evaluation); the accuracy is top-1, or (accuracy: authors, the default) mean per-class accuracy
on the datasets their submission reported it for (the figure's `per_class`). The same code
summarises our runs and their published cells (single runs: no interval).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from . import stats
from .grid import MODES
from .names import name as _name
from .names import plain, title
from .studies import WIDTH

# One run; its learning rate is `base_lr` (a run table's `lr` is the rate at each logged epoch)
KEYS = ["dataset", "source", "k", "size", "seed", "recipe", "base_lr"]
CELL = ["dataset", "source", "k"]  # one point of a figure: the best learning rate's
META = ["arch", "norm", "eps", "imagenet_top1"]
# The source's clean top-1 on its own task: ImageNet's as published (imagenet_top1), or, for a
# source pretrained here (the demo), its test accuracy recorded then (a run table's source_acc).
SOURCE_TOP1 = "source_top1"


def select(runs: pd.DataFrame, sel: dict, origin: str | None = None) -> pd.DataFrame:
    """The rows of a study figure's selection; published rows (learning rate unknown: NaN) match
    any of its learning rates; `origin` keeps one origin of published rows (submission, final:
    published tables have an `origin` column; our runs have none)."""
    keep = (
        runs["dataset"].isin(sel["datasets"])
        & runs["source"].isin(sel["sources"])
        & runs["k"].isin(sel["k"])
        & (runs["recipe"] == sel["recipe"])
        & (runs["base_lr"].isna() | runs["base_lr"].isin(sel["lr"]))
    )
    if origin is not None and "origin" in runs:
        keep &= runs["origin"] == origin
    return runs[keep]


def per_run(runs: pd.DataFrame, sel: dict, margin: float) -> pd.DataFrame:
    """One value per run: its best logged accuracy (the figure's `accuracy`), with n, and
    `collapsed` when its final top-1 is at most `margin` x chance."""
    value = runs["test_acc"].astype(float)
    if sel.get("accuracy", "authors") == "authors" and "test_acc_class" in runs:
        per_class = runs["dataset"].isin(sel["per_class"]) & runs["test_acc_class"].notna()
        value = value.where(~per_class, runs["test_acc_class"].astype(float))
    runs = runs.assign(value=value)
    grouped = runs.sort_values("epoch").groupby(KEYS, sort=False, dropna=False)
    last = grouped.tail(1).set_index(KEYS)
    out = grouped.agg(value=("value", "max"), n=("n", "first")).join(
        (last["test_acc"] <= margin * 100.0 / last["classes"]).rename("collapsed")
    )
    return out.reset_index()


def summary(runs: pd.DataFrame, sel: dict, seed: int = 0, margin: float = 1.5, include: bool = True) -> pd.DataFrame:
    """Per cell: the best learning rate's mean, CI and counts, with the source's metadata and the
    mode's name; a headline figure adds its robust-vs-standard rows (`role`)."""
    values = per_run(runs, sel, margin)
    by = ["dataset", "source", "k", "size", "n", "base_lr"]
    cells = stats.summarize(values, by, seed, include_collapsed=include)
    if cells.empty:
        return cells.assign(**{c: [] for c in ["mode", *META, SOURCE_TOP1, "expected", "role"]})
    best = cells.loc[cells.groupby(CELL, sort=False, dropna=False)["mean"].idxmax()]
    meta = pd.DataFrame.from_dict(sel["source_meta"], orient="index")[META]
    measured = runs.groupby("source")["source_acc"].mean() if "source_acc" in runs else pd.Series(dtype=float)
    meta[SOURCE_TOP1] = meta["imagenet_top1"].astype(float).fillna(measured.reindex(meta.index))
    out = best.join(meta, on="source").assign(mode=best["k"].map(MODES), expected=sel["seeds"]["full"], role="cell")
    extra = {"headline": headline_rows, "peak": peak_rows}.get(sel["kind"])
    if extra is not None:
        out = pd.concat([out, extra(out, values, seed)], ignore_index=True)
    return out.reset_index(drop=True)


def headline_rows(cells: pd.DataFrame, values: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Per dataset, mode and architecture (and `max`, the best architecture of each side): the
    standard source (eps = 0), the best robust one (eps > 0) and robust - standard, whose CI
    pairs the two cells' runs by seed (none for single runs)."""
    rows = []
    for (dataset, k), g in cells.groupby(["dataset", "k"], sort=False):
        groups = [(arch, a) for arch, a in g.groupby("arch", sort=False)] + [("max", g)]
        for arch, a in groups:
            std, rob = a[a["eps"] == 0], a[a["eps"] > 0]
            if std.empty or rob.empty:
                continue
            s, r = std.loc[std["mean"].idxmax()], rob.loc[rob["mean"].idxmax()]
            base = {"dataset": dataset, "k": k, "size": s["size"], "mode": s["mode"], "arch": arch}
            rows += [{**base, **_pick(s), "role": "standard"}, {**base, **_pick(r), "role": "robust"}]
            rows.append({**base, **_paired(values, r, s, seed), "role": "robust - standard", "eps": r["eps"]})
    return pd.DataFrame(rows)


def peak_rows(cells: pd.DataFrame, values: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Per dataset, mode and architecture: best robust - standard (the best eps > 0 against eps =
    0) and the interior-peak margin: the best interior eps (neither the smallest nor the largest)
    against the better of the two ends, both seed-paired. The interior eps is the one with the
    best mean, chosen on the same runs: the margin leans positive (a selection, as the authors'
    best eps); its CI pairs the runs of the two cells it names."""
    rows = []
    for (dataset, k, arch), g in cells.groupby(["dataset", "k", "arch"], sort=False):
        g = g.sort_values("eps")
        base = {"dataset": dataset, "k": k, "size": g["size"].iloc[0], "mode": g["mode"].iloc[0], "arch": arch}
        std, rob = g[g["eps"] == 0], g[g["eps"] > 0]
        if len(std) and len(rob):
            s, r = std.iloc[0], rob.loc[rob["mean"].idxmax()]
            rows.append({**base, **_paired(values, r, s, seed), "role": "robust - standard", "eps": r["eps"]})
        if len(g) >= 3:
            inner, ends = g.iloc[1:-1], g.iloc[[0, -1]]
            peak, end = inner.loc[inner["mean"].idxmax()], ends.loc[ends["mean"].idxmax()]
            paired = _paired(values, peak, end, seed)
            rows.append({**base, **paired, "role": "peak - end", "eps": peak["eps"], "end_eps": end["eps"]})
    return pd.DataFrame(rows)


def _pick(cell) -> dict:
    keys = ["source", "base_lr", "eps", "imagenet_top1", SOURCE_TOP1, "n", "mean", "ci_low", "ci_high", *stats.COUNTS]
    return {k: cell[k] for k in keys}


def _paired(values: pd.DataFrame, a, b, seed: int) -> dict:
    """a - b of two cells (each at its own learning rate), paired by seed."""

    def runs_of(cell):
        same_lr = values["base_lr"].eq(cell["base_lr"]) | (values["base_lr"].isna() & pd.isna(cell["base_lr"]))
        g = values[(values["dataset"] == cell["dataset"]) & (values["source"] == cell["source"])]
        return g[(g["k"] == cell["k"]) & same_lr[g.index]].set_index("seed")

    both = runs_of(a)[["value", "collapsed"]].merge(
        runs_of(b)[["value", "collapsed"]], left_index=True, right_index=True, suffixes=("", "_b")
    )
    diff = both["value"] - both["value_b"]
    low, high = stats.bootstrap_ci(diff, seed)
    collapsed = both["collapsed"].astype(bool) | both["collapsed_b"].astype(bool)
    return {
        "source": f"{a['source']}{stats.DELTA}{b['source']}",
        "mean": a["mean"] - b["mean"],
        "ci_low": low,
        "ci_high": high,
        "runs": len(diff),
        "collapsed": int(collapsed.sum()),
        "excluded": 0,
        "expected": a["expected"],
    }


def compare(ours: pd.DataFrame, theirs: pd.DataFrame) -> pd.DataFrame:
    """Per cell (and headline row): stats.compare on the cells' keys (our mean, theirs, the
    difference, whether the 95 % CIs overlap: NaN where theirs is a single run), with our eps and
    learning rate beside (theirs are not comparable: their learning rate is unknown)."""
    keys = ["dataset", "source", "k", "mode", "role"] + (["arch"] if "arch" in ours else [])
    cols = ["mean", "ci_low", "ci_high", "runs"]
    both = stats.compare(ours[keys + cols], theirs[keys + cols])
    return both.merge(ours[keys + ["eps", "base_lr"]], on=keys, how="left")


# ---------------------------------------------------------------------------------------------
# Drawing


def _panels(summary: pd.DataFrame, spec: dict) -> list[tuple[int, str]]:
    modes = [k for k in spec["k"] if k in set(summary["k"])]
    return [(k, d) for k in modes for d in spec["datasets"] if d in set(summary["dataset"])]


def _axes(n: int):
    import matplotlib.pyplot as plt

    cols = min(4, max(1, n))
    rows = max(1, math.ceil(n / cols))
    fig, grid = plt.subplots(rows, cols, figsize=(2.2 * cols + 0.6, 1.9 * rows + 0.9), squeeze=False)
    axes = list(grid.ravel())
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes


def _panel_title(spec, k, d, several_modes) -> str:
    return f"{_name(spec, d)}, {MODES[k]}" if several_modes else _name(spec, d)


def accuracy_label(spec: dict) -> str:
    if spec.get("accuracy", "authors") == "top1" or not spec.get("per_class"):
        return "Top-1 accuracy %"
    return "Accuracy % (mean per-class on " + ", ".join(plain(_name(spec, d)) for d in spec["per_class"]) + ")"


def draw(summary: pd.DataFrame, spec: dict, reference: pd.DataFrame | None = None):
    """A sweep (accuracy against eps or ImageNet top-1, a line per architecture) or width figure
    (standard and best robust against the ResNets' width), a panel per mode and dataset; with
    `reference`, the published cells dotted with crosses in the same colour."""
    cells = summary[summary["role"] == "cell"]
    panels = _panels(cells, spec)
    fig, axes = _axes(len(panels))
    several = len({k for k, _ in panels}) > 1
    archs = [a for a in spec.get("archs") or cells["arch"].unique() if a in set(cells["arch"])]
    colors = {a: f"C{i % 10}" for i, a in enumerate(archs)}
    for ax, (k, d) in zip(axes, panels):
        sub = cells[(cells["k"] == k) & (cells["dataset"] == d)]
        ref = None if reference is None else reference[(reference["k"] == k) & (reference["dataset"] == d)]
        if spec["kind"] == "width":
            _width_panel(ax, sub, ref, spec)
        else:
            for arch in archs:
                _line(ax, sub[sub["arch"] == arch], spec["x"], _name(spec, arch), colors[arch], ref, arch)
            if spec["x"] == "eps":
                ax.set_xscale("symlog", linthresh=0.01)
        ax.set_title(_panel_title(spec, k, d, several), fontsize=8)
        ax.tick_params(labelsize=6)
    if panels:
        axes[0].legend(fontsize=5)
    task = spec.get("source_task", "ImageNet")
    xlabel = {"eps": r"source $\epsilon$", "imagenet": f"source {task} top-1 %"}.get(
        spec.get("x"), "width (x ResNet-50)"
    )
    fig.supxlabel(xlabel, fontsize=8)
    fig.supylabel(accuracy_label(spec), fontsize=7)
    fig.suptitle(title(spec), fontsize=8)
    fig.tight_layout()
    return fig


def _line(ax, g, x, label, color, ref=None, arch=None):
    xcol = "eps" if x == "eps" else SOURCE_TOP1
    g = g.sort_values(xcol)
    ax.plot(g[xcol], g["mean"], "o-", ms=3, lw=1, color=color, label=label)
    if g["ci_low"].notna().any():
        ax.fill_between(g[xcol], g["ci_low"], g["ci_high"], color=color, alpha=0.2, lw=0)
    if ref is not None and arch is not None:
        r = ref[(ref["arch"] == arch) & (ref["role"] == "cell")].sort_values(xcol)
        if len(r):
            ax.plot(r[xcol], r["mean"], ls=":", marker="x", ms=3, lw=0.8, color=color, label=f"{label} (published)")


def _width_panel(ax, sub, ref, spec):
    archs = [a for a in WIDTH if a in set(sub["arch"])]
    xs = np.arange(len(archs))
    for role, fmt, color in (("standard", "s--", "0.4"), ("robust", "o-", "C3")):
        means = [_best(sub, a, role) for a in archs]
        ax.plot(
            xs,
            means,
            fmt,
            ms=3,
            lw=1,
            color=color,
            label=f"{role} ({'eps = 0' if role == 'standard' else 'best eps > 0'})",
        )
        if ref is not None and len(ref):
            theirs = [_best(ref[ref["role"] == "cell"], a, role) for a in archs]
            ax.plot(xs, theirs, ls=":", marker="x", ms=3, lw=0.8, color=color, label=f"{role} (published)")
    ax.set_xticks(xs, [plain(_name(spec, a)) for a in archs], rotation=30, fontsize=6)


def _best(cells: pd.DataFrame, arch: str, role: str) -> float:
    g = cells[cells["arch"] == arch]
    g = g[g["eps"] == 0] if role == "standard" else g[g["eps"] > 0]
    return float(g["mean"].max()) if len(g) else float("nan")


def plot(summary: pd.DataFrame, spec: dict, out, reference: pd.DataFrame | None = None, png=None) -> None:
    from .plots import save

    save(draw(summary, spec, reference), out, png)


# ---------------------------------------------------------------------------------------------
# Tables


def _cell_text(mean, eps=None) -> str:
    if pd.isna(mean):
        return ""
    return f"{mean:.2f}" + (f" ({eps:g})" if eps is not None and not pd.isna(eps) else "")


def wide(summary: pd.DataFrame, spec: dict) -> pd.DataFrame:
    """The table's numbers, one row per dataset and mode: headline: per architecture (and max)
    standard, best robust (its eps) and their difference; archs: each architecture at each eps."""
    rows = []
    cells = summary[summary["role"] == "cell"]
    for k, d in _panels(cells, spec):
        row = {"dataset": d, "mode": MODES[k]}
        if spec["kind"] == "headline":
            h = summary[(summary["dataset"] == d) & (summary["k"] == k) & (summary["role"] != "cell")]
            for arch in [*[a for a in spec.get("archs") or [] if a in set(h["arch"])], "max"]:
                for role in ("standard", "robust", "robust - standard"):
                    hit = h[(h["arch"] == arch) & (h["role"] == role)]
                    row[f"{arch}: {role}"] = hit["mean"].iloc[0] if len(hit) else np.nan
                    if role == "robust":
                        row[f"{arch}: robust eps"] = hit["eps"].iloc[0] if len(hit) else np.nan
        else:
            g = cells[(cells["dataset"] == d) & (cells["k"] == k)]
            for arch in spec.get("archs") or g["arch"].unique():
                for eps in sorted(g["eps"].unique()):
                    hit = g[(g["arch"] == arch) & (g["eps"] == eps)]
                    row[f"{arch}: eps {eps:g}"] = hit["mean"].iloc[0] if len(hit) else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


MARGINS = {"robust - standard": "best robust - eps 0", "peak - end": "interior peak - better end"}


def peak_table(summary: pd.DataFrame, spec: dict) -> pd.DataFrame:
    """The peak table's numbers, one row per dataset, mode and architecture: at each eps the
    source's clean top-1 and the transfer accuracy, then each margin (MARGINS) with its CI and
    the eps it compares."""
    rows = []
    cells = summary[summary["role"] == "cell"]
    for k, d in _panels(cells, spec):
        g = cells[(cells["dataset"] == d) & (cells["k"] == k)]
        for arch in [a for a in spec.get("archs") or g["arch"].unique() if a in set(g["arch"])]:
            row = {"dataset": d, "mode": MODES[k], "arch": arch}
            for _, c in g[g["arch"] == arch].sort_values("eps").iterrows():
                row[f"eps {c['eps']:g}: source"] = c[SOURCE_TOP1]
                row[f"eps {c['eps']:g}: transfer"] = c["mean"]
            h = summary[(summary["dataset"] == d) & (summary["k"] == k) & (summary["arch"] == arch)]
            for role, name in MARGINS.items():
                hit = h[h["role"] == role]
                for col, key in ((name, "mean"), (f"{name} low", "ci_low"), (f"{name} high", "ci_high")):
                    row[col] = hit[key].iloc[0] if len(hit) else np.nan
            peak = h[h["role"] == "peak - end"]
            row["peak eps"], row["end eps"] = (
                (peak["eps"].iloc[0], peak["end_eps"].iloc[0]) if len(peak) else (np.nan,) * 2
            )
            rows.append(row)
    table = pd.DataFrame(rows)
    eps = sorted({float(c.split()[1].rstrip(":")) for c in table.columns if c.startswith("eps ")})
    per_eps = [f"eps {e:g}: {part}" for e in eps for part in ("source", "transfer")]
    rest = [c for c in table.columns if not c.startswith("eps ")]  # the keys, then the margins
    return table[rest[:3] + per_eps + rest[3:]]


def peak_markdown(table: pd.DataFrame, spec: dict) -> str:
    """Two tables: per eps, the transfer accuracy with the source's clean top-1 in brackets; then
    the margins with their 95 % CIs (seed-paired; none for single runs)."""
    key = table[["dataset", "mode", "arch"]].copy()
    key["dataset"] = key["dataset"].map(lambda d: plain(_name(spec, d)))
    key["arch"] = key["arch"].map(lambda a: plain(_name(spec, a)))
    eps = [c.removesuffix(": transfer") for c in table.columns if c.endswith(": transfer")]
    first = key.copy()
    for e in eps:
        first[e] = [
            _cell_text(t) + (f" ({s:.1f})" if pd.notna(s) else "")
            for t, s in zip(table[f"{e}: transfer"], table[f"{e}: source"])
        ]
    second = key.copy()
    for name in MARGINS.values():
        second[name] = [
            "" if pd.isna(m) else f"{m:+.2f}" + ("" if pd.isna(lo) else f" [{lo:+.2f}, {hi:+.2f}]")
            for m, lo, hi in zip(table[name], table[f"{name} low"], table[f"{name} high"])
        ]
    second["peak eps vs end eps"] = [
        "" if pd.isna(p) else f"{p:g} vs {e:g}" for p, e in zip(table["peak eps"], table["end eps"])
    ]
    return (
        first.to_markdown(index=False, disable_numparse=True)
        + "\n\n"
        + second.to_markdown(index=False, disable_numparse=True)
    )


def markdown(table: pd.DataFrame, spec: dict) -> str:
    out = table.copy().astype(object)
    out["dataset"] = table["dataset"].map(lambda d: plain(_name(spec, d)))
    eps_cols = [c for c in table.columns if c.endswith(": robust eps")]
    for c in table.columns[2:]:
        if c in eps_cols:
            continue
        eps = table.get(c.replace(": robust", ": robust eps")) if c.endswith(": robust") else None
        out[c] = [_cell_text(v, None if eps is None else eps[i]) for i, v in enumerate(table[c])]

    def header(c):
        arch, _, rest = c.partition(": ")
        return f"{plain(_name(spec, arch)) if arch != 'max' else 'best architecture'}: {rest}"

    out = out.drop(columns=eps_cols).rename(columns={c: header(c) for c in table.columns[2:]})
    return out.to_markdown(index=False, disable_numparse=True)


def write_table(summary: pd.DataFrame, spec: dict, csv_out, md_out) -> None:
    peak = spec["kind"] == "peak"
    table = peak_table(summary, spec) if peak else wide(summary, spec)
    table.to_csv(csv_out, index=False, float_format="%.2f")
    with open(md_out, "w") as f:
        f.write(f"{plain(title(spec))}\n\n{(peak_markdown if peak else markdown)(table, spec)}\n\n")
        f.write(f"{accuracy_label(spec)}; each cell: the mean over seeds at the best learning rate; ")
        if peak:
            task = spec.get("source_task", "ImageNet")
            f.write(
                f"in brackets, the source's clean {task} top-1. Margins: mean [95 % CI] of the seed-paired "
                "differences (no CI for single runs); best robust: the best eps > 0; interior peak: the best eps "
                "other than the smallest and the largest, against the better of those two ends (chosen on the "
                "same runs, so it leans positive).\n"
            )
        else:
            f.write("robust: the best eps > 0 (in brackets).\n")
