"""Figures (PDF, and PNG for browsers) and tables (CSV + Markdown) from a figure's summary table."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from .grid import FULL, size_key  # noqa: E402
from .names import name as _name  # noqa: E402
from .names import plain, title  # noqa: E402
from .names import size as shown_size  # noqa: E402
from .stats import is_delta  # noqa: E402

# Line formats (matplotlib fmt strings) cycled when a figure names none in `styles`.
STYLES = ["o-", "s--", "^:", "D-.", "v-"]
DELTA_STYLE = "^-"  # the paper's delta plots: solid lines, triangles
MARKER = {"ms": 4, "mec": "0.2", "mew": 0.5}  # dark-edged markers, as in the paper
FLAGGED = {"marker": "x", "ms": 6, "mew": 1.2, "color": "black"}  # a point that includes collapsed runs
LEGEND = {"curves": {"loc": "lower right", "fontsize": 6}, "delta": {"fontsize": 6, "ncol": 2}}


def _xvalues(df: pd.DataFrame, x: str) -> pd.Series:
    """x positions: n on a log2 axis, every 'full' set at 2x the largest subset size (the
    full sets differ in size per dataset: one shared 'full' tick, as in the paper); or epoch."""
    if x == "epoch":
        return df["epoch"]
    sizes = [size_key(s) for s in df["size"].unique() if str(s) != FULL]
    full_x = 2 * max(sizes) if sizes else 1
    return df["size"].map(lambda s: full_x if str(s) == FULL else float(s))


def _band(ax, g, x, label, reference=None, fmt="o-", **kw):
    """A mean line with its 95 % CI band; `reference` (the published summary of the same line)
    is drawn dotted with crosses in the same colour."""
    g = g.assign(_x=_xvalues(g, x)).sort_values("_x")
    (line,) = ax.plot(g["_x"], g["mean"], fmt, lw=1.2, label=label, **MARKER, **kw)
    ax.fill_between(g["_x"], g["ci_low"], g["ci_high"], color=line.get_color(), alpha=0.2, lw=0)
    if "collapsed" in g:  # points whose mean includes collapsed runs, and points short of seeds
        hit = g[g["collapsed"] > 0]
        if len(hit):
            ax.plot(hit["_x"], hit["mean"], ls="none", **FLAGGED)
        for _, p in g[g["runs"] < g["expected"]].iterrows():
            ax.annotate(
                f"{int(p['runs'])}/{int(p['expected'])}",
                (p["_x"], p["mean"]),
                fontsize=5,
                xytext=(2, 2),
                textcoords="offset points",
            )
    if reference is not None and len(reference):
        r = reference.assign(_x=_xvalues(reference, x)).sort_values("_x")
        ax.plot(
            r["_x"], r["mean"], ls=":", marker="x", ms=4, lw=1, color=line.get_color(), label=f"{label} (published)"
        )


def _legend(ax, legend: dict, summary: pd.DataFrame) -> list:
    """The axis' legend, with an entry for the collapsed-run mark when a point carries it;
    returns the handles of the lines (for restyling)."""
    handles, labels = ax.get_legend_handles_labels()
    flagged = "collapsed" in summary and (summary["collapsed"] > 0).any()
    if flagged:
        handles.append(Line2D([], [], ls="none", **FLAGGED))
        labels.append("includes collapsed runs")
    drawn = ax.legend(handles, labels, **legend).legend_handles
    return drawn[:-1] if flagged else drawn


def _xaxis(ax, summary, x):
    """log2 x axis with a tick at every size (and 'full') or every plotted epoch."""
    ax.set_xscale("log", base=2)
    ticks = summary.assign(_x=_xvalues(summary, x)).drop_duplicates("_x").sort_values("_x")
    labels = ticks["epoch"].astype(int).astype(str) if x == "epoch" else ticks["size"].astype(str)
    ax.set_xticks(ticks["_x"], list(labels), rotation=45, fontsize=7)
    ax.minorticks_off()


def _xlabel(x) -> str:
    return "Number of training epochs" if x == "epoch" else "Number of training images"


def _ylim(ax, want) -> None:
    """The paper's y range, widened where our data (lines or bands) go beyond it, so a
    reproduction that differs from the paper is never clipped."""
    lo, hi = want
    auto_lo, auto_hi = ax.get_ylim()
    ax.set_ylim(lo if ax.dataLim.y0 >= lo else auto_lo, hi if ax.dataLim.y1 <= hi else auto_hi)


def _shade(color, i: int, n: int):
    """The i-th of n shades of a colour, light to full (the paper's per-dataset palettes for k
    and for the constraints)."""
    if n == 1:
        return color
    rgb = to_rgb(color)
    w = 0.6 * (1 - i / (n - 1))
    return tuple(c + (1 - c) * w for c in rgb)


PNG_DPI = 200  # the PNG beside each PDF (browsers, the HTML report): sharp at twice screen size


def plot_figure(summary: pd.DataFrame, spec: dict, out, reference: pd.DataFrame | None = None, png=None) -> None:
    """The figure as `out` (PDF), and the same drawing as `png` when given."""
    save(draw(summary, spec, reference), out, png)


def save(fig: plt.Figure, out, png=None) -> None:
    """A drawn figure as `out` (PDF), and as `png` when given; then closed."""
    fig.savefig(out)
    if png is not None:
        fig.savefig(png, dpi=PNG_DPI)
    plt.close(fig)


def draw(summary: pd.DataFrame, spec: dict, reference: pd.DataFrame | None = None) -> plt.Figure:
    """Draw a curves or delta figure in the paper's look: a colour per dataset (tab10 in
    config order; `shades`: light to full per line), a line format per source or k (`styles`),
    95 % bootstrap bands, log2 x axis,
    the paper's y ranges (`ylim`, one range or one per dataset). With `reference`, overlay the
    published numbers of the same lines."""
    x = "epoch" if spec.get("x") == "epoch" else "n"
    colors = {d: f"C{i % 10}" for i, d in enumerate(spec["palette"])}
    datasets = [d for d in spec["datasets"] if d in set(summary["dataset"])]
    styles = {str(k): v for k, v in spec.get("styles", {}).items()}
    ylim = spec.get("ylim")
    legend = {**LEGEND[spec["kind"]], **spec.get("legend", {})}

    def ref(mask_fn):
        return None if reference is None else reference[mask_fn(reference)]

    if spec["kind"] == "delta":
        fig, ax = plt.subplots(figsize=(3.6, 3.2))
        for d in datasets:
            g = summary[summary["dataset"] == d]
            _band(ax, g, x, _name(spec, d), ref(lambda t, d=d: t["dataset"] == d), DELTA_STYLE, color=colors[d])
        ax.set_ylabel("Test Accuracy Delta %")
        ax.set_xlabel(_xlabel(x))
        _xaxis(ax, summary, x)
        for handle in _legend(ax, legend, summary):
            handle.set_marker("")  # the paper's delta legends show lines only
        if ylim:
            _ylim(ax, ylim)
    else:
        hue = spec.get("hue", "source")
        values = spec["sources"] if hue == "source" else spec["k"]
        cols = min(3, len(datasets))
        rows = math.ceil(len(datasets) / cols)
        size = (2.1 * cols + 0.6, 1.8 * rows + 0.8) if len(datasets) > 1 else (4.0, 2.8)
        fig, grid = plt.subplots(rows, cols, figsize=size, squeeze=False, sharex=True)
        axes = list(grid.ravel())
        shown = summary[summary["dataset"].isin(datasets)]  # every panel gets every tick (shared x)
        for ax, d in zip(axes, datasets):
            sub = summary[summary["dataset"] == d]
            for i, value in enumerate(values):
                g = sub[sub[hue] == value]
                if len(g):
                    label = _name(spec, value, hue)
                    r = ref(lambda t, d=d, v=value: (t["dataset"] == d) & (t[hue] == v))
                    color = _shade(colors[d], i, len(values)) if spec.get("shades") else colors[d]
                    _band(ax, g, x, label, r, styles.get(str(value), STYLES[i % len(STYLES)]), color=color)
            ax.set_title(_name(spec, d), fontsize=8)
            ax.tick_params(labelsize=7)
            _xaxis(ax, shown, x)
            handles = _legend(ax, legend, sub)
            if len(datasets) > 1:  # a colour per panel: the legend shows formats only, in grey (as the paper)
                for handle in handles:
                    handle.set_color("0.3")
            if ylim:
                _ylim(ax, ylim.get(d, ax.get_ylim()) if isinstance(ylim, dict) else ylim)
        for i, ax in enumerate(axes[len(datasets) :], start=len(datasets)):
            ax.set_visible(False)
            axes[i - cols].xaxis.set_tick_params(labelbottom=True)  # the panel above shows the ticks
        if len(datasets) == 1:
            axes[0].set_xlabel(_xlabel(x))
            axes[0].set_ylabel("Test Accuracy %")
        else:  # shared axis labels, as in the paper's 2 x 3 panels
            fig.supxlabel(_xlabel(x), fontsize=9)
            fig.supylabel("Test Accuracy %", fontsize=9)
    fig.suptitle(title(spec), fontsize=8)
    fig.tight_layout()
    return fig


def table(summary: pd.DataFrame, spec: dict, value: str = "mean") -> pd.DataFrame:
    """Rows (dataset, n), one column per source (or k) and delta: mean test accuracy (or another
    summary column: runs, collapsed). Rows are grouped by dataset, or by n with `rows: size`
    (Table 7)."""
    by = spec.get("columns", "source")
    wide = summary.pivot_table(
        index=["dataset", "size"], columns=by, values=value, sort=False, dropna=False
    ).reset_index()
    wide.columns.name = None
    values = spec["sources"] if by == "source" else spec["k"]
    extra = [c for c in wide.columns if c not in ["dataset", "size", *values]]
    wide = wide[["dataset", "size", *[v for v in values if v in wide.columns], *extra]]
    order = {d: i for i, d in enumerate(spec["datasets"])}
    keys = ["_s", "_d"] if spec.get("rows") == "size" else ["_d", "_s"]
    wide = (
        wide.assign(_d=wide["dataset"].map(order), _s=wide["size"].map(size_key))
        .sort_values(keys)
        .drop(columns=["_d", "_s"])
    )
    return wide.rename(columns={"size": "n"}).reset_index(drop=True)


COLLAPSED = "†"  # a cell's mark: "†2" = two of its runs collapsed


def markdown(wide: pd.DataFrame, spec: dict, counts: dict[str, pd.DataFrame] | None = None) -> str:
    """The paper's look of a table: display names, n with thousands separators, each row's best
    accuracy in bold (deltas are not candidates); `transpose` puts the sources in rows (Table 2).
    With `counts` (tables of runs, collapsed, expected), a cell with collapsed runs is marked
    "†<count>", and one with fewer runs than the grid's seeds "(<runs>/<seeds>)"."""
    values = [c for c in wide.columns[2:] if not is_delta(c)]
    best = wide[values].max(axis=1)
    cells = wide.copy().astype(object)
    for c in wide.columns[2:]:
        bold = wide[c].eq(best) & (c in values)
        cells[c] = [("" if pd.isna(v) else f"**{v:.2f}**" if b else f"{v:.2f}") for v, b in zip(wide[c], bold)]
        if counts is not None:
            cells[c] = [text + _marks(counts, c, i) if text else text for i, text in enumerate(cells[c])]
    cells["dataset"] = wide["dataset"].map(lambda d: plain(_name(spec, d)))
    cells["n"] = wide["n"].map(shown_size)
    by = spec.get("columns", "source")
    cells = cells.rename(columns={c: plain(_name(spec, c, by)) for c in wide.columns[2:]})
    if spec.get("transpose"):  # one column per dataset (and n, where a dataset has several)
        names = cells["dataset"] if cells["n"].nunique() == 1 else cells["dataset"] + ", n=" + cells["n"]
        cells = cells.drop(columns=["dataset", "n"]).set_axis(names).T.rename_axis("model").reset_index()
    return cells.to_markdown(index=False, disable_numparse=True)


def _marks(counts, column, row) -> str:
    runs, collapsed, expected = (counts[k].at[row, column] for k in ("runs", "collapsed", "expected"))
    marks = f" {COLLAPSED}{int(collapsed)}" if collapsed > 0 else ""
    return marks + (f" ({int(runs)}/{int(expected)})" if runs < expected else "")


def write_table(summary: pd.DataFrame, spec: dict, csv_out, md_out) -> None:
    """The CSV keeps ids and plain numbers (for machines): the means, then per column its runs
    and collapsed runs and per row the seeds the grid defines; the Markdown is the paper's look,
    with the counts as marks and footnotes."""
    wide = table(summary, spec)
    counts = {k: table(summary, spec, k) for k in ("runs", "collapsed", "expected")}
    out = wide.copy()
    for c in wide.columns[2:]:
        out[f"{c} runs"], out[f"{c} collapsed"] = counts["runs"][c], counts["collapsed"][c]
    out["seeds"] = counts["expected"][wide.columns[2:]].max(axis=1)
    out.to_csv(csv_out, index=False, float_format="%.2f")
    with open(md_out, "w") as f:
        heading = plain(title(spec))
        f.write((f"{heading}\n\n" if heading else "") + markdown(wide, spec, counts) + "\n")
        f.write("".join(f"\n{line}\n" for line in notes(summary, spec)))


def notes(summary: pd.DataFrame, spec: dict) -> list[str]:
    """What a reader must know about the numbers behind a figure or table: missing runs and
    collapsed runs, counted (never a silent average of fewer seeds)."""
    if summary.empty:
        return ["No runs: none of this table's runs exist in its source of results."]
    by = spec.get("columns", "source") if spec["kind"] == "table" else spec.get("hue", "source")
    runs = (
        summary if spec["kind"] == "delta" else summary[~summary[by].map(is_delta)]
    )  # a table's delta rows repeat its runs
    out = []
    collapsed, excluded = int(runs["collapsed"].sum()), int(runs["excluded"].sum())
    if collapsed and excluded:
        out.append(
            f"{COLLAPSED}n: n of the cell's runs collapsed (final accuracy at most the collapse margin times chance); "
            f"{excluded} such runs are left out of the means (aggregate.include_collapsed: false)."
        )
    elif collapsed:
        out.append(
            f"{COLLAPSED}n: n of the cell's runs collapsed (final accuracy at most the collapse margin times chance); "
            "they are averaged in, as the authors did (aggregate.include_collapsed: false leaves them out)."
        )
    short = runs[runs["runs"] < runs["expected"]]
    if len(short):
        out.append(f"(r/s): only r of the s seeds the grid defines are in the mean ({len(short)} cells).")
    return out
