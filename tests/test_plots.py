"""The paper's look, on the drawn matplotlib objects: line formats, shades, y ranges, legends,
and the tables' layout (row order, bold best, transposition)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import pytest
import yaml
from conftest import REPO, load_config
from matplotlib.colors import to_rgb

from robust_transfer import grid, names, plots, stats

CONFIG = yaml.safe_load((REPO / "config.yaml").read_text())
SIZES = ["100", "200", "400", "full"]


def summary(rows) -> pd.DataFrame:
    """A figure summary as stats.figure_summary writes it: (dataset, source, k, size) -> mean, CI."""
    out = []
    for dataset, source, k, means in rows:
        for size, mean in zip(SIZES, means):
            out.append(
                dict(
                    dataset=dataset,
                    source=source,
                    k=k,
                    size=size,
                    n=size,
                    mean=mean,
                    ci_low=mean - 1,
                    ci_high=mean + 1,
                    runs=10,
                    collapsed=0,
                    excluded=0,
                    expected=10,
                )
            )
    return pd.DataFrame(out)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_curves_use_the_papers_formats_and_shared_labels():
    """Fig 2a: robust solid with circles, natural dashed without markers, one colour per
    dataset, grey legend handles, one x and one y label for the 2 x 3 panels."""
    spec = grid.figure_spec(CONFIG, "fig2a")
    datasets = spec["datasets"]
    fig = plots.draw(summary([(d, s, 3, [10, 20, 30, 40]) for d in datasets for s in ("l2_3", "natural")]), spec)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == [CONFIG["labels"][d] for d in datasets]
    robust, natural = panels[1].get_lines()[:2]
    assert (robust.get_linestyle(), robust.get_marker()) == ("-", "o")
    assert (natural.get_linestyle(), natural.get_marker()) == ("--", "None")
    assert robust.get_color() == natural.get_color() == "C1"  # CIFAR-10 is the second dataset: tab10 C1
    assert [t.get_text() for t in panels[0].get_legend().get_texts()] == ["robust", "natural"]
    assert all(to_rgb(h.get_color()) == to_rgb("0.3") for h in panels[0].get_legend().legend_handles)
    assert fig.get_supxlabel() == "Number of training images" and fig.get_supylabel() == "Test Accuracy %"
    assert [t.get_text() for t in panels[3].get_xticklabels()] == ["100", "200", "400", "full"]  # bottom row


def test_block_study_shades_light_to_full():
    """Fig 4a: k=0 markers only, k=9 dash-dot; shades of the dataset colour, lightest first."""
    spec = grid.figure_spec(CONFIG, "fig4a")
    fig = plots.draw(summary([("cifar10", "linf_8", k, [30, 40, 50, 60]) for k in (0, 1, 3, 9)]), spec)
    lines = fig.axes[0].get_lines()
    assert [(ln.get_linestyle(), ln.get_marker()) for ln in lines] == [
        ("None", "o"),
        ("-", "s"),
        ("-", "d"),
        ("-.", "None"),
    ]
    whiteness = [sum(to_rgb(ln.get_color())) for ln in lines]
    assert whiteness == sorted(whiteness, reverse=True) and to_rgb(lines[-1].get_color()) == to_rgb("C1")
    assert fig.axes[0].get_xlabel() == "Number of training images"  # one panel: its own labels


def test_ylim_is_the_papers_range_and_widens_for_data_beyond_it():
    spec = grid.figure_spec(CONFIG, "fig2a")
    inside = plots.draw(summary([("cifar10", s, 3, [50, 60, 70, 80]) for s in ("l2_3", "natural")]), spec)
    assert inside.axes[0].get_ylim() == tuple(CONFIG["figures"]["fig2a"]["ylim"]["cifar10"])
    below = plots.draw(summary([("cifar10", s, 3, [20, 60, 70, 80]) for s in ("l2_3", "natural")]), spec)
    low, high = below.axes[0].get_ylim()
    assert low < 19 and high == CONFIG["figures"]["fig2a"]["ylim"]["cifar10"][1]  # the band (19) stays in view


def test_delta_figure_triangles_and_line_only_legend():
    spec = grid.figure_spec(CONFIG, "fig5c")
    fig = plots.draw(summary([(d, "linf_4 - linf_8", 1, [7, 5, 3, 1]) for d in ("cifar10", "svhn")]), spec)
    ax = fig.axes[0]
    assert {(ln.get_linestyle(), ln.get_marker()) for ln in ax.get_lines()} == {("-", "^")}
    assert [h.get_marker() for h in ax.get_legend().legend_handles] == ["", ""]
    assert ax.get_ylim() == (-8, 14) and ax.get_ylabel() == "Test Accuracy Delta %"


def test_table7_layout_groups_by_size_and_bolds_each_rows_best():
    spec = grid.figure_spec(CONFIG, "table7")
    rows = [
        ("cifar100", s, 3, [m + i for m in (8, 13, 18, 70)])
        for i, s in enumerate(["natural", "l2_3", "linf_4", "linf_8"])
    ]
    rows.append(("cifar10", "natural", 3, [48, 57, 66, 95]))
    rows.append(("cifar10", "scratch", 16, [0, 0, 0, 96]))
    wide = plots.table(summary(rows), spec)
    assert list(wide.columns) == ["dataset", "n", "natural", "l2_3", "linf_4", "linf_8", "scratch"]
    assert list(zip(wide["n"], wide["dataset"]))[:3] == [("100", "cifar100"), ("100", "cifar10"), ("200", "cifar100")]
    md = plots.markdown(wide, spec).splitlines()
    assert "‖δ‖₂ ≤ 3" in md[0] and "Trained from random init" in md[0]
    first = [c.strip() for c in md[2].strip("|").split("|")]
    assert first == ["CIFAR-100", "100", "8.00", "9.00", "10.00", "**11.00**", ""]
    full_cifar10 = [c.strip() for c in md[-1].strip("|").split("|")]
    assert full_cifar10[:3] == ["CIFAR-10", "full", "95.00"] and full_cifar10[-1] == "**96.00**"


def test_table2_transposed_models_as_rows():
    spec = grid.figure_spec(CONFIG, "table2")
    rows = [
        (d, s, 3, [0, 0, 0, m + j])
        for j, d in enumerate(spec["datasets"])
        for s, m in (("l2_3", 83.7), ("natural", 79.1))
    ]
    rows += [(d, "l2_3 - natural", 3, [0, 0, 0, 4.6]) for d in spec["datasets"]]
    data = summary(rows)
    md = plots.markdown(plots.table(data[data["size"] == "full"], spec), spec).splitlines()
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in md]
    assert cells[0] == ["model", "Low-Res", "Low-Pass"]
    assert cells[2] == ["Robust", "**83.70**", "**84.70**"] and cells[3] == ["Natural", "79.10", "80.10"]
    assert cells[4] == ["Robust - Natural", "4.60", "4.60"]  # a delta is never bold


def test_points_with_collapsed_runs_are_marked_and_short_points_say_their_seeds():
    """A point whose mean includes collapsed runs gets a black cross (and the legend says what it
    means); a point with fewer runs than the grid's seeds is labelled runs/seeds."""
    spec = grid.figure_spec(CONFIG, "fig5c")
    table = summary([(d, "linf_4 - linf_8", 1, [1, 2, 3, 4]) for d in spec["datasets"]])
    table.loc[(table.dataset == "svhn") & (table["size"] == "200"), "collapsed"] = 2
    table.loc[(table.dataset == "mnist") & (table["size"] == "400"), "runs"] = 7
    ax = plots.draw(table, spec).axes[0]
    crosses = [line for line in ax.get_lines() if line.get_marker() == "x" and line.get_linestyle() == "None"]
    assert len(crosses) == 1 and list(crosses[0].get_ydata()) == [2]
    assert "includes collapsed runs" in [t.get_text() for t in ax.get_legend().get_texts()]
    assert [t.get_text() for t in ax.texts] == ["7/10"]
    clean = plots.draw(summary([(d, "linf_4 - linf_8", 1, [1, 2, 3, 4]) for d in spec["datasets"]]), spec).axes[0]
    assert not [line for line in clean.get_lines() if line.get_marker() == "x"] and not clean.texts


def test_tables_count_collapsed_and_missing_runs_per_cell(tmp_path):
    """Table 7 as the paper averages (collapsed runs in): the cell says how many collapsed
    (†n) and how many seeds it lacks (r/s), the footnotes say what the marks mean, and the CSV
    carries the counts as numbers."""
    spec = grid.figure_spec(CONFIG, "table7")
    table = summary([("svhn", s, 3, [20, 30, 40, 50]) for s in ("natural", "l2_3")])
    table.loc[(table.source == "natural") & (table["size"] == "100"), "collapsed"] = 1
    table.loc[(table.source == "l2_3") & (table["size"] == "200"), "runs"] = 9
    plots.write_table(table, spec, tmp_path / "t.csv", tmp_path / "t.md")
    md = (tmp_path / "t.md").read_text()
    assert "**20.00** †1" in md and "(9/10)" in md and md.count("†1") == 1
    assert "†n: n of the cell's runs collapsed" in md and "averaged in, as the authors did" in md
    assert "(r/s): only r of the s seeds" in md
    csv = pd.read_csv(tmp_path / "t.csv", dtype={"n": str}).set_index("n")
    assert (
        csv.loc["100", "natural collapsed"] == 1 and csv.loc["200", "l2_3 runs"] == 9 and csv.loc["100", "seeds"] == 10
    )


def test_mathtext_names_become_the_papers_unicode_in_tables_and_the_report():
    assert names.plain(CONFIG["labels"]["l2_3"]) == "‖δ‖₂ ≤ 3"
    assert names.plain(CONFIG["labels"]["linf_4"]) == "‖δ‖∞ ≤ 4/255"
    assert names.plain("CIFAR-10") == "CIFAR-10" and names.DELTA == stats.DELTA


@pytest.mark.parametrize("overlays", [(), ("config.demo.yaml",)], ids=["paper", "demo"])
def test_no_figure_restates_a_top_level_name(overlays):
    """A figure's own labels are for roles (robust, Natural): restating a top-level name there
    would keep the paper's name when an overlay renames the source (the demo's Table 7 once
    called its L2 0.5 source "‖δ‖₂ ≤ 3")."""
    config = load_config(*overlays)
    top = {key: names.plain(value) for key, value in config["labels"].items()}
    for fig, spec in config["figures"].items():
        for key, value in (spec.get("labels") or {}).items():
            assert names.plain(value) != top.get(key), f"figures.{fig}.labels.{key} restates labels.{key}"


@pytest.mark.parametrize(
    ("overlays", "robust"), [((), "‖δ‖₂ ≤ 3"), (("config.demo.yaml",), "‖δ‖₂ ≤ 0.5")], ids=["paper", "demo"]
)
def test_names_follow_the_active_config(overlays, robust, tmp_path):
    """Table 7's column, Fig 2b's title and the report's captions name the L2 source as the
    active config does (the paper's radius 3, the demo's 0.5), with placeholders filled."""
    config = load_config(*overlays)
    spec = grid.figure_spec(config, "table7")
    table = summary([("svhn", s, 3, [20, 30, 40, 50]) for s in ("natural", "l2_3")])
    plots.write_table(table, spec, tmp_path / "t.csv", tmp_path / "t.md")
    assert f"| {robust} " in (tmp_path / "t.md").read_text()
    fig2b = names.caption(grid.figure_spec(config, "fig2b"), config["labels"])
    assert fig2b["title"].startswith(f"Fig 2b: {robust} - natural, k=3") and fig2b["delta"] == f"{robust} - natural"
    fig3a = names.caption(grid.figure_spec(config, "fig3a"), config["labels"])
    assert fig3a["sources"] == f"robust ({robust}), natural"  # the figure's role, and which source
    for fig in grid.in_all(config):
        text = " ".join(names.caption(grid.figure_spec(config, fig), config["labels"]).values())
        assert not set("{}$\\") & set(text), (fig, text)


def test_a_figure_is_written_as_pdf_and_png_of_the_same_drawing(tmp_path):
    spec = grid.figure_spec(CONFIG, "fig5c")
    table = summary([(d, "linf_4 - linf_8", 1, [1, 2, 3, 4]) for d in spec["datasets"]])
    plots.plot_figure(table, spec, tmp_path / "f.pdf", png=tmp_path / "f.png")
    assert (tmp_path / "f.pdf").read_bytes().startswith(b"%PDF")
    image = plt.imread(tmp_path / "f.png")
    assert image.shape[1] == 3.6 * plots.PNG_DPI and image[..., :3].std() > 0.05  # drawn, not blank
