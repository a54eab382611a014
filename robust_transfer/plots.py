"""Figures (PDF) and tables (CSV + Markdown) from a figure's summary table."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from .grid import FULL, size_key  # noqa: E402


STYLES = [("-", "o"), ("--", "s"), (":", "^"), ("-.", "D"), ((0, (5, 1)), "v")]


def _xvalues(df: pd.DataFrame, x: str) -> pd.Series:
    """x positions: n on a log2 axis, every 'full' set at 2x the largest subset size (the
    full sets differ in size per dataset: one shared 'full' tick, as in the paper); or epoch."""
    if x == "epoch":
        return df["epoch"]
    sizes = [size_key(s) for s in df["size"].unique() if str(s) != FULL]
    full_x = 2 * max(sizes) if sizes else 1
    return df["size"].map(lambda s: full_x if str(s) == FULL else float(s))


def _band(ax, g, x, label, reference=None, style=("-", "o"), **kw):
    """A mean line with its 95 % CI band; `reference` (the published summary of the same line)
    is drawn dotted with crosses in the same colour."""
    g = g.assign(_x=_xvalues(g, x)).sort_values("_x")
    (line,) = ax.plot(g["_x"], g["mean"], ls=style[0], marker=style[1], ms=3, lw=1.2, label=label, **kw)
    ax.fill_between(g["_x"], g["ci_low"], g["ci_high"], color=line.get_color(), alpha=0.2, lw=0)
    if reference is not None and len(reference):
        r = reference.assign(_x=_xvalues(reference, x)).sort_values("_x")
        ax.plot(r["_x"], r["mean"], ls=":", marker="x", ms=4, lw=1, color=line.get_color(), label=f"{label} (published)")


def _xaxis(ax, summary, x):
    """log2 x axis with a tick at every size (and 'full') or every plotted epoch."""
    ax.set_xscale("log", base=2)
    ticks = summary.assign(_x=_xvalues(summary, x)).drop_duplicates("_x").sort_values("_x")
    labels = ticks["epoch"].astype(int).astype(str) if x == "epoch" else ticks["size"].astype(str)
    ax.set_xticks(ticks["_x"], list(labels), rotation=45, fontsize=7)
    ax.minorticks_off()
    ax.set_xlabel("Number of training epochs" if x == "epoch" else "Number of training images")


def _name(spec, value) -> str:
    return str(spec.get("labels", {}).get(str(value), value))


def plot_figure(summary: pd.DataFrame, spec: dict, out, reference: pd.DataFrame | None = None) -> None:
    """Draw a curves or delta figure in the paper's look: a colour per dataset (tab10 in
    config order), a line style and marker per source or k, 95 % bootstrap bands, log2 x axis.
    With `reference`, overlay the published numbers of the same lines."""
    x = "epoch" if spec.get("x") == "epoch" else "n"
    colors = {d: f"C{i % 10}" for i, d in enumerate(spec["palette"])}
    datasets = [d for d in spec["datasets"] if d in set(summary["dataset"])]

    def ref(mask_fn):
        return None if reference is None else reference[mask_fn(reference)]

    if spec["kind"] == "delta":
        fig, ax = plt.subplots(figsize=(4.2, 3.4))
        for d in datasets:
            _band(ax, summary[summary["dataset"] == d], x, _name(spec, d), ref(lambda t, d=d: t["dataset"] == d), color=colors[d])
        ax.axhline(0, color="black", lw=0.6)
        ax.set_ylabel("Test Accuracy Delta %")
        _xaxis(ax, summary, x)
        ax.legend(fontsize=6, ncol=2)
        axes = [ax]
    else:
        hue = spec.get("hue", "source")
        values = spec["sources"] if hue == "source" else spec["k"]
        cols = min(3, len(datasets))
        rows = math.ceil(len(datasets) / cols)
        fig, grid = plt.subplots(rows, cols, figsize=(2.6 * cols + 0.6, 2.3 * rows + 0.6), squeeze=False)
        axes = list(grid.ravel())
        for ax, d in zip(axes, datasets):
            sub = summary[summary["dataset"] == d]
            for i, value in enumerate(values):
                g = sub[sub[hue] == value]
                if len(g):
                    label = _name(spec, f"k={value}" if hue == "k" else value)
                    r = ref(lambda t, d=d, v=value: (t["dataset"] == d) & (t[hue] == v))
                    _band(ax, g, x, label, r, STYLES[i % len(STYLES)], color=colors[d])
            ax.set_title(_name(spec, d), fontsize=8)
            ax.tick_params(labelsize=7)
            _xaxis(ax, sub, x)
            ax.legend(fontsize=6)
        for ax in axes[len(datasets) :]:
            ax.set_visible(False)
        for ax in axes[::cols]:
            ax.set_ylabel("Test Accuracy %")
    if "ylim" in spec:
        for ax in axes:
            ax.set_ylim(*spec["ylim"])
    fig.suptitle(spec.get("title", ""), fontsize=8)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def table(summary: pd.DataFrame, spec: dict) -> pd.DataFrame:
    """Rows (dataset, n), one column per source (or k) and delta: mean test accuracy."""
    by = spec.get("columns", "source")
    wide = summary.pivot_table(index=["dataset", "size"], columns=by, values="mean", sort=False, dropna=False).reset_index()
    wide.columns.name = None
    values = spec["sources"] if by == "source" else spec["k"]
    extra = [c for c in wide.columns if c not in ["dataset", "size", *values]]
    wide = wide[["dataset", "size", *[v for v in values if v in wide.columns], *extra]]
    order = {d: i for i, d in enumerate(spec["datasets"])}
    wide = wide.assign(_d=wide["dataset"].map(order), _s=wide["size"].map(size_key)).sort_values(["_d", "_s"]).drop(columns=["_d", "_s"])
    return wide.rename(columns={"size": "n"}).reset_index(drop=True)


def write_table(summary: pd.DataFrame, spec: dict, csv_out, md_out) -> None:
    wide = table(summary, spec)
    wide.to_csv(csv_out, index=False, float_format="%.2f")
    with open(md_out, "w") as f:
        title = spec.get("title", "")
        f.write((f"{title}\n\n" if title else "") + wide.to_markdown(index=False, floatfmt=".2f") + "\n")
        if summary.empty:
            f.write("\nNo runs: none of this table's runs exist in its source of results.\n")
        else:
            runs = summary[~summary[spec.get("columns", "source")].astype(str).str.contains(" - ")]  # not the delta rows
            if runs["excluded"].sum():
                f.write(f"\n{int(runs['excluded'].sum())} collapsed run(s) left out (aggregate.include_collapsed: true keeps them).\n")
