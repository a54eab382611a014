"""Real Snakemake runs of the real rules: a reduced copy of the demo, dry runs of the paper grid,
incremental reruns and config errors. No mocks: every job runs its script in a subprocess."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
FIGURES = ["fig2a", "fig2b", "fig3a", "fig3b", "fig4a", "fig4b", "fig5a", "fig5b", "fig5c", "fig5d", "fig5e"]
FIGURES += ["fig10a_800", "fig10b_800", "fig10a_12800", "fig10b_12800", "fig11a_linf8", "fig11b_linf8"]
TABLES = ["table2", "table7"]


def snakemake(workdir: Path, *args, check=True, env=None):
    """Run Snakemake on the workflow copy in `workdir` if there is one, else on the repository."""
    snakefile = workdir / "Snakefile" if (workdir / "Snakefile").exists() else REPO / "Snakefile"
    cmd = SNAKEMAKE + ["-s", str(snakefile), "--directory", str(workdir), "--workflow-profile", "none", *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


def job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table of a (dry) run: rule -> count."""
    counts = {}
    block = output.split("Job stats:", 1)[1]
    for line in block.splitlines()[3:]:
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if not m:
            break
        counts[m.group(1)] = int(m.group(2))
    return counts


def reduced_demo() -> dict:
    """The demo config, shrunk further: fewer sizes and epochs, one dataset for most figures,
    every figure id kept, and a 'full'-size table to exercise that path."""
    cfg = yaml.safe_load((REPO / "config.demo.yaml").read_text())
    for spec in cfg["sources"].values():
        spec["train"].update(epochs=1)
        if spec["train"]["attack"]:
            spec["train"]["attack"]["steps"] = 1
    cfg["grid"].update(datasets=["digits"], sizes=[10, 20], seeds={"count": 2, "by_size": {"20": 1}, "base": 7, "step": 1})
    cfg["finetune"]["schedule"] = [{"max_size": None, "epochs": 2, "eval_every": 1}]
    cfg["figures"]["fig3a"].update(sizes=[10], epochs=[1, 2])
    cfg["figures"]["fig3b"].update(sizes=[10], epochs=[1, 2])
    cfg["figures"]["fig5b"].update(datasets=["lfw"], sizes=[10])
    cfg["figures"]["table2"].update(sizes=["full"])
    # Table 7's from-scratch column: a random-init source fine-tuned with every block (k=16)
    cfg["sources"]["scratch"] = {"random_init": {"seed": 0, "width_per_group": 16}}
    cfg["figures"]["table7"].update(sources=cfg["figures"]["table7"]["sources"] + ["scratch"], k_by_source={"scratch": [16]})
    return cfg


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """Runs the reduced demo once, in a copy of the workflow (so a test may edit its code)."""
    root = tmp_path_factory.mktemp("workflow")
    for item in ["Snakefile", "rules", "scripts", "schemas", "envs", "robust_transfer"]:
        (shutil.copytree if (REPO / item).is_dir() else shutil.copy2)(REPO / item, root / item)
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
    assert {"test_acc", "test_loss", "train_acc", "train_loss", "time", "collapsed", "n", "classes"} <= set(runs.columns)
    # fig4a: every k of the block study on digits, both seeds at n=10 and one at n=20
    k_study = runs[(runs["source"] == "linf_8") & (runs["dataset"] == "digits")]
    assert set(k_study["k"]) == {0, 1, 3, 9}
    assert k_study.groupby("size")["seed"].nunique().to_dict() == {"10": 2, "20": 1}
    # 'full' uses the whole training split of the Table 2 variants (150 of 200 LFW images)
    assert set(runs.loc[runs["dataset"].isin(["lfw_8", "lfw_lowpass"]), "n"]) == {150}
    assert set(runs["source"]) == set(cfg["sources"])
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
    best = best[~runs.groupby(["source", "size", "seed"])["collapsed"].first().unstack("source").any(axis=1)]
    expected = (best["linf_4"] - best["linf_8"]).groupby("size").mean()
    got = summary[summary["dataset"] == "digits"].set_index("size")["mean"]
    for size, value in expected.items():
        assert got[size] == pytest.approx(value)


def test_run_metadata_and_determinism(demo_run):
    """Rerunning one job (same config, same seed, same machine) gives the same numbers."""
    root, _, _ = demo_run
    run = "results/runs/digits/l2_05/k3/n10/s7"
    before = pd.read_csv(root / f"{run}.csv")
    meta = yaml.safe_load((root / f"{run}.json").read_text())
    assert meta["run"] == {"dataset": "digits", "source": "l2_05", "k": 3, "size": "10", "n": 10, "seed": 7}
    assert meta["versions"]["torch"] and len(meta["config_digest"]) == 16
    snakemake(root, "--cores", "1", "--forcerun", f"{run}.csv", f"{run}.csv")
    after = pd.read_csv(root / f"{run}.csv")
    cols = ["epoch", "test_acc", "test_loss", "train_acc", "train_loss"]
    pd.testing.assert_frame_equal(before[cols], after[cols])


def test_editing_a_figures_config_reruns_only_that_figure(demo_run, tmp_path):
    """A figure's resolved config is a param of its jobs: changing fig2b's y range reruns its
    aggregate and figure, nothing else (no fine-tuning, no other figure)."""
    root, _, _ = demo_run
    cfg = yaml.safe_load((root / "config.yaml").read_text())
    cfg["figures"]["fig2b"]["ylim"] = [-5, 50]
    (tmp_path / "edited.yaml").write_text(yaml.safe_dump(cfg))
    counts = job_counts(snakemake(root, "-n", "--quiet", "rules", "--configfile", tmp_path / "edited.yaml").stdout)
    counts.pop("total", None)
    assert counts == {"aggregate": 1, "figure": 1, "all": 1}


def test_editing_plot_code_reruns_only_figure_jobs(demo_run):
    root, _, _ = demo_run
    assert "Nothing to be done" in snakemake(root, "-n").stdout
    plots = root / "robust_transfer" / "plots.py"
    plots.write_text(plots.read_text() + "\n# a plotting change\n")
    counts = job_counts(snakemake(root, "-n", "--quiet", "rules").stdout)
    counts.pop("total", None)
    assert counts == {"figure": len(FIGURES), "table": len(TABLES), "all": 1}


def test_paper_dry_run_lists_fig5c_jobs_fast_without_torch(tmp_path):
    """Default config, offline, no data: 6 datasets x 2 sources x 81 size-seed pairs at k=1."""
    env = dict(os.environ, PYTHONPROFILEIMPORTTIME="1")
    start = time.time()
    proc = snakemake(tmp_path, "figures/fig5c.pdf", "--configfile", REPO / "config.yaml", "-n", "--quiet", "rules", env=env)
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
    counts = job_counts(snakemake(tmp_path, "figures/table7.csv", "--configfile", REPO / "config.yaml", "-n", "--quiet", "rules").stdout)
    assert counts["finetune"] == 5 * 6 * 81
    counts = job_counts(snakemake(tmp_path, "--configfile", REPO / "config.yaml", "-n", "--quiet", "rules").stdout)
    assert counts["figure"] == 21 and counts["table"] == 2 and counts["source"] == 4 and counts["random_source"] == 1


def test_bad_config_fails_before_any_job(tmp_path):
    cfg = yaml.safe_load((REPO / "config.demo.yaml").read_text())
    cfg["figures"]["fig5c"]["delta"]["a"] = "linf_16"
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(cfg))
    proc = snakemake(tmp_path, "--configfile", tmp_path / "bad.yaml", "--replace-workflow-config", "--cores", "1", check=False)
    assert proc.returncode != 0
    assert "figures.fig5c: source 'linf_16' is not in sources" in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()


def test_schema_rejects_unknown_keys(tmp_path):
    cfg = yaml.safe_load((REPO / "config.demo.yaml").read_text())
    cfg["finetune"]["learning_rate"] = 0.1
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(cfg))
    proc = snakemake(tmp_path, "--configfile", tmp_path / "bad.yaml", "--replace-workflow-config", "-n", check=False)
    assert proc.returncode != 0 and "learning_rate" in proc.stdout + proc.stderr


def test_offline_download_names_missing_files(tmp_path):
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg["data"] = {"mirror": str(tmp_path / "mirror"), "offline": True}
    (tmp_path / "offline.yaml").write_text(yaml.safe_dump(cfg))
    proc = snakemake(tmp_path, "--configfile", tmp_path / "offline.yaml", "--replace-workflow-config", "--cores", "1", "resources/data/cifar10/READY", check=False)
    assert proc.returncode != 0
    log = (tmp_path / "logs" / "download" / "cifar10.log").read_text()
    assert "cifar-10-batches-py/data_batch_1" in log and "mirror" in log


def test_compare_overlays_published_runs(demo_run, tmp_path):
    """figures/compare/<fig>: our runs and (fabricated) published logs for the same cells, on
    the same axes, with a per-cell table of both means and their difference."""
    root, _, _ = demo_run
    logs = pd.DataFrame(
        [
            dict(epoch=e, nat_prec1=40.0 + seed, nat_loss=1.0, train_prec1=50.0, train_loss=1.0, time=1.0, source_eps=0, target_ds="digits", num_training_images=10, unfrozen_blocks=3, seed=seed)
            for seed in (7, 8)
            for e in (1, 2)
        ]
    )
    logs.to_csv(tmp_path / "logs.csv")
    cfg = reduced_demo()
    cfg["published"] = {"url": "unused://", "sha256": None, "mirror": str(tmp_path / "logs.csv")}
    (root / "with_published.yaml").write_text(yaml.safe_dump(cfg))
    snakemake(root, "--configfile", root / "with_published.yaml", "--replace-workflow-config", "--cores", "2", "figures/compare/fig2a.csv", "figures/compare/fig2a.pdf")
    table = pd.read_csv(root / "figures" / "compare" / "fig2a.csv", dtype={"size": str}).set_index(["source", "size"])
    cell = table.loc[("natural", "10")]
    assert cell["mean_published"] == pytest.approx(47.5) and cell["runs_published"] == 2
    assert cell["difference"] == pytest.approx(cell["mean_ours"] - 47.5)
    assert pd.isna(table.loc[("l2_05", "10"), "mean_published"])  # no published L2 0.5 runs
    assert (root / "figures" / "compare" / "fig2a.pdf").read_bytes().startswith(b"%PDF")
