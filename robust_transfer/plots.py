"""Figures (PDF) and tables (CSV + Markdown) from a figure's summary table."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from .grid import FULL, size_key  # noqa: E402


def _label(value) -> str:
    return "full" if str(value) == FULL else str(value)


def _band(ax, g, x, label, reference=None, **style):
    """A mean line with its CI band; `reference` (the published summary of the same line) is
    drawn dashed in the same colour."""
    g = g.sort_values(x)
    (line,) = ax.plot(g[x], g["mean"], marker="o", ms=3, label=label, **style)
    ax.fill_between(g[x], g["ci_low"], g["ci_high"], color=line.get_color(), alpha=0.2, lw=0)
    if reference is not None and len(reference):
        r = reference.sort_values(x)
        ax.plot(r[x], r["mean"], ls="--", marker="x", ms=3, color=line.get_color(), label=f"{label} (published)")


def _xaxis(ax, summary, x):
    if x == "n":
        ax.set_xscale("log", base=2)
        ticks = summary.drop_duplicates("size").assign(_o=lambda d: d["size"].map(size_key)).sort_values("_o")
        ax.set_xticks(ticks["n"], [_label(s) for s in ticks["size"]], rotation=45)
        ax.minorticks_off()
        ax.set_xlabel("training images (n)")
    else:
        ax.set_xlabel("epoch")


def plot_figure(summary: pd.DataFrame, spec: dict, out, reference: pd.DataFrame | None = None) -> None:
    """Draw a curves or delta figure; with `reference`, overlay the published numbers."""
    x = "n" if spec.get("x", "size") == "size" else "epoch"

    def ref(mask_fn):
        return None if reference is None else reference[mask_fn(reference)]

    datasets = [d for d in spec["datasets"] if d in set(summary["dataset"])]
    if spec["kind"] == "delta":
        fig, ax = plt.subplots(figsize=(5, 3.6))
        for i, d in enumerate(datasets):
            _band(ax, summary[summary["dataset"] == d], x, d, ref(lambda t, d=d: t["dataset"] == d), color=f"C{i}")
        ax.axhline(0, color="black", lw=0.8)
        d = spec["delta"]
        ax.set_ylabel(f"test accuracy delta (%)\n{d['by']} {d['a']} - {d['b']}")
        _xaxis(ax, summary, x)
        axes = [ax]
    else:
        hue = spec.get("hue", "source")
        # one colour per line value across all panels, in config order
        colors = {v: f"C{i}" for i, v in enumerate(spec["sources"] if hue == "source" else spec["k"])}
        cols = min(3, len(datasets))
        rows = math.ceil(len(datasets) / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
        axes = axes.ravel()
        for ax, d in zip(axes, datasets):
            sub = summary[summary["dataset"] == d]
            for value, color in colors.items():
                g = sub[sub[hue] == value]
                if len(g):
                    r = ref(lambda t, d=d, v=value: (t["dataset"] == d) & (t[hue] == v))
                    _band(ax, g, x, f"{hue}={value}" if hue == "k" else str(value), r, color=color)
            ax.set_title(d)
            ax.set_ylabel("test accuracy (%)")
            _xaxis(ax, sub, x)
        for ax in axes[len(datasets) :]:
            ax.set_visible(False)
    if "ylim" in spec:
        for ax in axes:
            ax.set_ylim(*spec["ylim"])
    axes[0].legend(fontsize=7)
    fig.suptitle(spec.get("title", ""), fontsize=10)
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
