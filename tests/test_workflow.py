"""Real Snakemake runs of the real rules: a reduced copy of the demo, dry runs of the paper grid,
incremental reruns and config errors. No mocks: every job runs its script in a subprocess."""

from __future__ import annotations

import os
import time

import pandas as pd
import pytest
import yaml
from conftest import REPO, copy_workflow, job_counts, load_config, snakemake

from robust_transfer import grid

FIGURES = ["fig2a", "fig2b", "fig3a", "fig3b", "fig4a", "fig4b", "fig5a", "fig5b", "fig5c", "fig5d", "fig5e"]
FIGURES += ["fig10a_800", "fig10b_800", "fig10a_12800", "fig10b_12800", "fig11a_linf8", "fig11b_linf8"]
TABLES = ["table2", "table7"]


def reduced_demo() -> dict:
    """The demo config, shrunk further: fewer sizes and epochs, one dataset for most figures,
    every figure id kept, and a 'full'-size table to exercise that path."""
    cfg = load_config("config.demo.yaml")
    for spec in cfg["sources"].values():
        if spec.get("train"):
            spec["train"].update(epochs=1)
            if spec["train"]["attack"]:
                spec["train"]["attack"]["steps"] = 1
    cfg["grid"].update(
        datasets=["digits"], sizes=[10, 20], seeds={"count": 2, "by_size": {"20": 1}, "base": 7, "step": 1}
    )
    cfg["finetune"]["schedule"] = [{"max_size": None, "epochs": 2, "eval_every": 1}]
    cfg["figures"]["fig3a"].update(sizes=[10], epochs=[1, 2])
    cfg["figures"]["fig3b"].update(sizes=[10], epochs=[1, 2])
    for fig in ("fig10a_800", "fig10b_800", "fig10a_12800", "fig10b_12800"):
        cfg["figures"][fig].update(epochs=[1, 2])
    cfg["figures"]["fig5b"].update(datasets=["lfw"], sizes=[10])
    cfg["figures"]["table2"].update(sizes=["full"])
    # Table 7's from-scratch column: a random-init source fine-tuned with every block (k=16)
    cfg["sources"]["scratch"]["random_init"]["width_per_group"] = 16
    cfg["figures"]["table7"].update(
        sources=cfg["figures"]["table7"]["sources"] + ["scratch"], k_by_source={"scratch": [16]}
    )
    return cfg


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """Runs the reduced demo once, in a copy of the workflow (so a test may edit its code)."""
    root = copy_workflow(tmp_path_factory.mktemp("workflow") / "workflow")
    (root / "config.yaml").write_text(yaml.safe_dump(reduced_demo()))
    start = time.time()
    proc = snakemake(root, "--cores", "2", "--resources", "gpu=2", "--scheduler", "greedy")
    return root, proc, time.time() - start


def test_demo_builds_every_figure_and_table(demo_run):
    root, proc, seconds = demo_run
    print(f"reduced demo: {seconds:.0f} s")
    for fig in FIGURES:
        pdf = root / "figures" / f"{fig}.pdf"
        assert pdf.read_bytes().startswith(b"%PDF"), fig
    for table in TABLES:
        csv = pd.read_csv(root / "figures" / f"{table}.csv")
        assert len(csv) > 0 and "n" in csv.columns
        assert (root / "figures" / f"{table}.md").read_text().count("|") > 4


def test_run_table_holds_every_run_and_epoch(demo_run):
    root, _, _ = demo_run
    runs = pd.read_csv(root / "results" / "runs.csv", dtype={"size": str})
    cfg = reduced_demo()
    assert set(runs["epoch"]) == {1, 2}
    assert {"test_acc", "test_loss", "train_acc", "train_loss", "time", "collapsed", "n", "classes"} <= set(
        runs.columns
    )
    # fig4a: every k of the block study on digits, both seeds at n=10 and one at n=20
    k_study = runs[(runs["source"] == "linf_8") & (runs["dataset"] == "digits")]
    assert set(k_study["k"]) == {0, 1, 3, 9}
    assert k_study.groupby("size")["seed"].nunique().to_dict() == {"10": 2, "20": 1}
    # 'full' uses the whole training split of the Table 2 variants (150 of 200 LFW images)
    assert set(runs.loc[runs["dataset"].isin(["lfw_8", "lfw_lowpass"]), "n"]) == {150}
    assert (
        set(runs["source"])
        == {r.source for r in grid.all_runs(cfg)}
        == {"natural", "l2_3", "linf_4", "linf_8", "scratch"}
    )
    scratch = runs[runs["source"] == "scratch"]
    assert set(scratch["k"]) == {16} and set(scratch["dataset"]) == {"digits"}
    table7 = pd.read_csv(root / "figures" / "table7.csv")
    assert "scratch" in table7.columns


def test_summary_pairs_deltas_by_seed(demo_run):
    root, _, _ = demo_run
    runs = pd.read_csv(root / "results" / "figures" / "fig5c" / "runs.csv", dtype={"size": str})
    summary = pd.read_csv(root / "results" / "figures" / "fig5c" / "summary.csv", dtype={"size": str})
    assert set(summary["source"]) == {"linf_4 - linf_8"}
    best = runs.groupby(["source", "size", "seed"])["test_acc"].max().unstack("source")
    expected = (best["linf_4"] - best["linf_8"]).groupby("size").mean()
    got = summary[summary["dataset"] == "digits"].set_index("size")["mean"]
    for size, value in expected.items():
        assert got[size] == pytest.approx(value)


def test_run_metadata_and_determinism(demo_run):
    """Rerunning one job (same config, same seed, same machine) gives the same numbers."""
    root, _, _ = demo_run
    run = "results/runs/digits/l2_3/k3/n10/s7"
    before = pd.read_csv(root / f"{run}.csv")
    meta = yaml.safe_load((root / f"{run}.json").read_text())
    assert meta["run"] == {"dataset": "digits", "source": "l2_3", "k": 3, "size": "10", "n": 10, "seed": 7}
    assert meta["versions"]["torch"] and len(meta["settings_digest"]) == 16 and meta["settings"]["epochs"] == 2
    snakemake(root, "--cores", "1", "--forcerun", f"{run}.csv", f"{run}.csv")
    after = pd.read_csv(root / f"{run}.csv")
    cols = ["epoch", "test_acc", "test_loss", "train_acc", "train_loss"]
    pd.testing.assert_frame_equal(before[cols], after[cols])


def _planned(root, tmp_path, edit) -> dict[str, int]:
    """The jobs a dry run plans after `edit` changes the workflow's config."""
    cfg = yaml.safe_load((root / "config.yaml").read_text())
    edit(cfg)
    (tmp_path / "edited.yaml").write_text(yaml.safe_dump(cfg))
    return job_counts(snakemake(root, "-n", "--quiet", "rules", configfiles=[tmp_path / "edited.yaml"]).stdout)


def test_editing_a_figures_look_reruns_only_its_drawing(demo_run, tmp_path):
    """A figure's resolved config is a param of its jobs: a new title redraws fig2b alone."""
    root, _, _ = demo_run
    counts = _planned(root, tmp_path, lambda cfg: cfg["figures"]["fig2b"].update(title="another title"))
    assert counts == {"figure": 1, "all": 1}


def test_editing_a_figures_statistics_reruns_its_aggregate_and_drawing(demo_run, tmp_path):
    root, _, _ = demo_run
    counts = _planned(root, tmp_path, lambda cfg: cfg["figures"]["fig2b"].update(metric="best"))
    assert counts == {"aggregate": 1, "figure": 1, "figure_metrics": 1, "all": 1}


def test_editing_a_dataset_reruns_exactly_its_jobs(demo_run, tmp_path):
    """datasets.lfw_8 is used by Table 2 only: a new downscale re-prepares it and reruns its
    subsets, its runs, the run table and Table 2, nothing else."""
    root, _, _ = demo_run
    runs = [r for r in grid.all_runs(reduced_demo()) if r.dataset == "lfw_8"]
    counts = _planned(root, tmp_path, lambda cfg: cfg["datasets"]["lfw_8"].update(downscale=6))
    subsets = len({(r.size, r.seed) for r in runs})
    assert len(runs) == 4 and subsets == 2  # 2 sources x 2 seeds of the full set
    assert counts == {
        "prepare": 1,
        "subsample": subsets,
        "finetune": len(runs),
        "aggregate": 1,
        "table": 1,
        "figure_metrics": 1,
        "collect": 1,
        "all": 1,
    }


def test_editing_where_jobs_run_reruns_nothing(demo_run, tmp_path):
    """Where and how a job executes (threads, allow_cpu, the layout it trains in) is not what
    it computes."""
    root, _, _ = demo_run

    def edit(cfg):
        for section in ("finetune", "pretrain"):
            layout = "auto" if cfg[section].get("channels_last") is True else True
            cfg[section].update(threads=2, allow_cpu=not cfg[section]["allow_cpu"], channels_last=layout)

    assert _planned(root, tmp_path, edit) == {}


def test_editing_plot_code_reruns_only_figure_jobs(demo_run):
    root, _, _ = demo_run
    assert "Nothing to be done" in snakemake(root, "-n").stdout
    plots = root / "robust_transfer" / "plots.py"
    plots.write_text(plots.read_text() + "\n# a plotting change\n")
    counts = job_counts(snakemake(root, "-n", "--quiet", "rules").stdout)
    assert counts == {"figure": len(FIGURES), "table": len(TABLES), "all": 1}


def test_paper_dry_run_lists_fig5c_jobs_fast_without_torch(tmp_path):
    """Default config, offline, no data: 6 datasets x 2 sources x 81 size-seed pairs at k=1."""
    env = dict(os.environ, PYTHONPROFILEIMPORTTIME="1")
    start = time.time()
    proc = snakemake(tmp_path, "figures/fig5c.pdf", "-n", "--quiet", "rules", env=env)
    seconds = time.time() - start
    counts = job_counts(proc.stdout)
    assert counts["finetune"] == 972
    assert counts["subsample"] == 486 and counts["download"] == 6 and counts["source"] == 2
    assert seconds < 30, seconds
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "snakemake" in imported and "torch" not in imported and "torchvision" not in imported


def test_paper_grid_all_targets(tmp_path):
    """Every published item has a target; Table 7 alone needs 5 sources (from scratch included)
    x 6 datasets x 81 runs."""
    counts = job_counts(snakemake(tmp_path, "figures/table7.csv", "-n", "--quiet", "rules").stdout)
    assert counts["finetune"] == 5 * 6 * 81
    counts = job_counts(snakemake(tmp_path, "-n", "--quiet", "rules").stdout)
    assert counts["figure"] == 21 and counts["table"] == 2 and counts["source"] == 4 and counts["random_source"] == 1


def test_bad_config_fails_before_any_job(tmp_path):
    (tmp_path / "bad.yaml").write_text(
        yaml.safe_dump({"figures": {"fig5c": {"delta": {"by": "source", "a": "linf_16", "b": "linf_8"}}}})
    )
    overlays = [REPO / "config.demo.yaml", tmp_path / "bad.yaml"]
    proc = snakemake(tmp_path, "--cores", "1", configfiles=overlays, check=False)
    assert proc.returncode != 0
    assert "figures.fig5c: source 'linf_16' is not in sources" in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()


def test_schema_rejects_unknown_keys(tmp_path):
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"finetune": {"learning_rate": 0.1}}))
    proc = snakemake(tmp_path, "-n", configfiles=[REPO / "config.demo.yaml", tmp_path / "bad.yaml"], check=False)
    assert proc.returncode != 0 and "learning_rate" in proc.stdout + proc.stderr


def test_offline_download_names_missing_files(tmp_path):
    (tmp_path / "offline.yaml").write_text(
        yaml.safe_dump({"data": {"mirror": str(tmp_path / "mirror"), "offline": True}})
    )
    target = "resources/data/cifar10/READY"
    proc = snakemake(tmp_path, "--cores", "1", target, configfiles=[tmp_path / "offline.yaml"], check=False)
    assert proc.returncode != 0
    log = (tmp_path / "logs" / "download" / "cifar10.log").read_text()
    assert "cifar-10-batches-py/data_batch_1" in log and "mirror" in log


def test_compare_overlays_published_runs(demo_run, tmp_path):
    """figures/compare/<fig>: our runs and (fabricated) published logs for the same cells, on
    the same axes, with a per-cell table of both means and their difference."""
    root, _, _ = demo_run
    logs = pd.DataFrame(
        [
            dict(
                epoch=e,
                nat_prec1=40.0 + seed,
                nat_loss=1.0,
                train_prec1=50.0,
                train_loss=1.0,
                time=1.0,
                source_eps=0,
                target_ds="digits",
                num_training_images=10,
                unfrozen_blocks=3,
                seed=seed,
            )
            for seed in (7, 8)
            for e in (1, 2)
        ]
    )
    logs.to_csv(tmp_path / "logs.csv")
    (root / "with_published.yaml").write_text(
        yaml.safe_dump(
            {
                "published": {
                    "url": "https://example.org/unused.csv",
                    "sha256": None,
                    "mirror": str(tmp_path / "logs.csv"),
                }
            }
        )
    )
    targets = ["figures/compare/fig2a.csv", "figures/compare/fig2a.pdf"]
    snakemake(root, "--cores", "2", *targets, configfiles=[root / "with_published.yaml"])
    table = pd.read_csv(root / "figures" / "compare" / "fig2a.csv", dtype={"size": str}).set_index(["source", "size"])
    cell = table.loc[("natural", "10")]
    assert cell["mean_published"] == pytest.approx(47.5) and cell["runs_published"] == 2
    assert cell["difference"] == pytest.approx(cell["mean_ours"] - 47.5)
    assert pd.isna(table.loc[("l2_3", "10"), "mean_published"])  # no published runs of this source
    assert (root / "figures" / "compare" / "fig2a.pdf").read_bytes().startswith(b"%PDF")
