"""The second study (Salman et al., NeurIPS 2020) on the same rules: run identity, source
families, the authors' recipe resolved per run, the published tables as a run table, every
figure, table and claim rebuilt from them by real Snakemake runs, the whole grid in a dry run,
its cost and time limits from the one cost model."""

from __future__ import annotations

import copy
from pathlib import Path

import pandas as pd
import pytest
from conftest import job_counts, snakemake

from robust_transfer import grid, plan, published, recipes, studies, sweeps
from robust_transfer.files import copy_workflow

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "reference" / "salman2020"
STUDY = "salman2020"


@pytest.fixture(scope="module")
def salman_config(paper_config) -> dict:
    config = copy.deepcopy(paper_config)
    studies.expand(config, REPO)
    return config


# ---- run identity


def test_a_utrera_run_keeps_its_path_and_a_salman_run_names_recipe_mode_and_lr():
    utrera = grid.Run("cifar10", "l2_3", 3, "full", 20000000)
    assert utrera.path == "results/runs/cifar10/l2_3/k3/nfull/s20000000"
    full = grid.Run("salman_pets", "r50_l2_3", -1, "full", 0, "salman", 0.01)
    fixed = grid.Run("salman_pets", "r50_l2_3", 0, "full", 0, "salman", 0.001)
    assert full.path == "results/runs/salman_pets/r50_l2_3/salman-full-lr0.01/nfull/s0"
    assert fixed.path == "results/runs/salman_pets/r50_l2_3/salman-fixed-lr0.001/nfull/s0"
    assert (full.mode, fixed.mode, utrera.mode) == ("full-network", "fixed-feature", "k=3")
    for run in (utrera, full, fixed):  # the wildcards of its path give the same run back
        dataset, source, tuning, size, seed = run.path.removeprefix("results/runs/").split("/")
        wildcards = type("W", (), dict(dataset=dataset, source=source, tuning=tuning, size=size[1:], seed=seed[1:]))
        assert grid.Run.of(wildcards) == run


# ---- sources


def test_source_families_expand_with_architecture_norm_eps_and_imagenet_accuracy(salman_config):
    names = studies.study_sources(salman_config, STUDY)
    assert len(names) == 4 * 10 + 2 * 6 + 6 * 2 == len(set(names))
    r50 = salman_config["sources"]["r50_l2_3"]
    assert r50["url"].endswith("/resnet50_l2_eps3.ckpt") and r50["url"].startswith("https://huggingface.co/madrylab/")
    assert (r50["arch"], r50["norm"], r50["eps"], r50["imagenet_top1"]) == ("resnet50", "l2", 3.0, 62.83)
    linf = salman_config["sources"]["r18_linf_4"]
    assert linf["url"].endswith("/resnet18_linf_eps4.0.ckpt") and linf["imagenet_top1"] == 52.49
    assert salman_config["sources"]["r50_linf_0"]["imagenet_top1"] == 75.60  # their own L-inf eps = 0 model
    # listed twice in the reference (submission 75.50, final README 75.51): the README's
    assert salman_config["sources"]["wrn50_4_l2_1"]["imagenet_top1"] == 75.51
    assert salman_config["sources"]["densenet_l2_3"]["arch"] == "densenet"


def test_the_demos_families_are_pretrained_here_and_the_first_demos_sources_keep_their_settings(demo_config):
    """studies.<name>.sources.train: every family source becomes a pretrain_source entry (the
    study's keys, the family's width, PGD in its norm at its eps, natural at 0); `extra` adds
    the first demo's sources, whose pretraining settings are what they were before (a ResNet-50's
    arch is not a setting), so a finished first demo retrains nothing."""
    from robust_transfer import checks

    names = studies.study_sources(demo_config, STUDY)
    assert names[-3:] == ["natural", "l2_3", "linf_8"] and len(names) == 8
    r50, wrn = demo_config["sources"]["r50_l2_1"], demo_config["sources"]["wrn50_2_l2_0"]
    assert r50["url"] is None and r50["train"]["attack"] == {"norm": "l2", "eps": 1.0, "steps": 2}
    assert r50["train"]["width_per_group"] == 16 and wrn["train"]["width_per_group"] == 32
    assert wrn["train"]["attack"] is None and "steps" not in wrn["train"]
    assert recipes.pretrain_settings(demo_config, "wrn50_2_l2_0")["arch"] == "wide_resnet50_2"
    assert "arch" not in recipes.pretrain_settings(demo_config, "natural")
    before = {**demo_config["pretrain"], **demo_config["sources"]["natural"]["train"]}
    assert recipes.pretrain_settings(demo_config, "natural") == {
        k: v for k, v in before.items() if k not in recipes.PLACEMENT
    }
    # pretrained here with the first demo's recipe: r50_l2_0.5 would be l2_3's settings exactly
    assert {**r50["train"], "attack": None} == {**demo_config["sources"]["natural"]["train"]}
    assert checks.problems(demo_config) == []
    broken = copy.deepcopy(demo_config)
    broken["studies"][STUDY]["sources"]["extra"] = ["linf_4", "nope"]
    assert {p for p in checks.problems(broken) if "extra" in p} == {
        f"studies.{STUDY}.sources.extra: sources.linf_4 needs arch, norm and eps (figure axes)",
        f"studies.{STUDY}.sources.extra: 'nope' is not in sources",
    }
    broken["studies"][STUDY]["sources"]["train"] = None
    assert (
        f"studies.{STUDY}.sources: set url (a pattern to fetch from) or train (pretrain them here)"
        in checks.problems(broken)
    )


def test_a_user_points_one_source_at_a_local_file_and_keeps_its_metadata(paper_config):
    config = copy.deepcopy(paper_config)
    config["sources"]["r50_l2_3"] = {"url": "/data/r50.ckpt"}
    studies.expand(config, REPO)
    spec = config["sources"]["r50_l2_3"]
    assert spec["url"] == "/data/r50.ckpt" and spec["arch"] == "resnet50" and spec["eps"] == 3.0


# ---- the authors' recipe, resolved per run


def test_salman_settings_take_the_runs_lr_their_normalisation_and_per_class_metric(salman_config):
    run = grid.Run("salman_pets", "r50_l2_3", -1, "full", 0, "salman", 0.01)
    pets = recipes.settings_of(salman_config, run)
    assert pets["lr"] == 0.01 and pets["batch_size"] == 64 and pets["head_std"] is None
    assert (pets["mean"], pets["std"], pets["normalize"]) == ([0.0] * 3, [1.0] * 3, "none")  # no normalisation
    assert pets["per_class"] is True and pets["train_crop"] == "random_resized"
    assert pets["epochs"] == 150 and pets["eval_epochs"] == [1 + 5 * i for i in range(30)] + [150]  # their 0..145, 149
    assert pets["lr_drops"] == 3 and pets["momentum"] == 0.9 and pets["weight_decay"] == 0.0005
    cifar = recipes.settings_of(salman_config, grid.Run("salman_cifar10", "r50_l2_3", 0, "full", 0, "salman", 0.001))
    assert cifar["normalize"] == "recipe" and cifar["mean"] == [0.4914, 0.4822, 0.4465] and not cifar["per_class"]
    cifar100 = recipes.settings_of(salman_config, grid.Run("salman_cifar100", "r50_l2_3", 0, "full", 0, "salman", 0.01))
    assert cifar100["std"] == [0.2675, 0.2565, 0.2761]  # their CIFAR-100 statistics (Utrera's reuse CIFAR-10's)
    assert "normalize" not in salman_config["finetune"]  # Utrera's settings are untouched:
    utrera = recipes.settings_of(salman_config, grid.Run("cifar10", "l2_3", 3, "100", 20000000))
    assert utrera == recipes.run_settings(salman_config, "cifar10", "l2_3", "100")
    assert (utrera["mean"], utrera["std"], utrera["lr"]) == (None, None, 0.1)


def test_lr_schedule_steps_every_50_of_150_epochs():
    from robust_transfer.train import lr_at

    assert [lr_at(e, 0.01, 150, 3) for e in (0, 49, 50, 99, 100, 149)] == pytest.approx(
        [0.01, 0.01, 0.001, 0.001, 0.0001, 0.0001]
    )


# ---- the published tables as a run table


@pytest.fixture(scope="module")
def published_runs(salman_config):
    read = dict(dtype=str, keep_default_na=False)
    datasets = {d: salman_config["datasets"][d] for d in salman_config["studies"][STUDY]["datasets"]}
    runs = published.salman_run_table(
        pd.read_csv(REFERENCE / "transfer_accuracy.csv", **read),
        pd.read_csv(REFERENCE / "best_params.csv", **read),
        datasets,
    )
    return published.with_dataset_facts(runs, pd.read_csv(REFERENCE / "datasets.csv"), datasets)


def test_every_published_cell_reads_back_as_in_the_reference(published_runs):
    ref = pd.read_csv(REFERENCE / "transfer_accuracy.csv", dtype=str, keep_default_na=False)
    cells = ref[(ref["selection"] == "cell") & (ref["input_resolution"] == "native")]
    sub = published_runs[published_runs["origin"] == "submission"]
    assert len(sub) == len(cells.drop_duplicates(["dataset", "arch", "norm", "eps", "mode"])) == 924
    loaders = {"birds": "birdsnap", "stanford_cars": "cars", "SUN397": "sun397"}
    by_cell = sub.set_index(["dataset", "source", "k"])["test_acc"]
    for row in cells.itertuples():
        key = (f"salman_{loaders.get(row.dataset, row.dataset)}", studies.source_name(row.arch, row.norm, row.eps))
        ours = by_cell[(*key, grid.MODE_K[row.mode])]
        assert abs(ours - float(row.accuracy)) <= 0.010001, (row, ours)  # one cell in two tables: 0.01 apart
        if row.table == "small_datasets_Finetuning.tex":  # the first table of a cell is taken as printed
            assert ours == float(row.accuracy)
    best = pd.read_csv(REFERENCE / "best_params.csv", dtype=str)
    final = published_runs[published_runs["origin"] == "final"]
    assert len(final) == len(best) == 96
    assert list(final["test_acc"]) == [float(x) for x in best["accuracy"]]
    assert list(final["base_lr"]) == [float(x) for x in best["lr"]]
    assert sub["base_lr"].isna().all()  # the submission's tables do not say which learning rate won


def test_published_per_class_numbers_are_marked_where_the_submission_reported_them(published_runs):
    sub = published_runs[published_runs["origin"] == "submission"]
    per_class = sub[sub["metric"] == "mean per-class"]
    assert set(per_class["dataset"]) == {
        "salman_aircraft",
        "salman_caltech101",
        "salman_caltech256",
        "salman_flowers",
        "salman_pets",
    }
    assert (per_class["test_acc_class"] == per_class["test_acc"]).all()
    assert sub[sub["metric"] == "top-1"]["test_acc_class"].isna().all()
    final = published_runs[published_runs["origin"] == "final"]
    assert final["test_acc_class"].isna().all()  # the final code's metric is not stated: top-1 only


def test_headline_from_the_published_numbers_equals_their_headline_table(salman_config, published_runs):
    spec = grid.figure_statistics(salman_config, "salman2020/headline")
    runs = sweeps.select(published_runs, spec, "submission")
    table = sweeps.summary(runs, spec).query("arch == 'max'").set_index(["dataset", "mode", "role"])["mean"]
    # headline-table.tex: full-network Adv/Std CIFAR-10 98.68/97.63, CIFAR-100 89.04/85.99,
    # Aircraft 86.08/86.57; fixed-feature CIFAR-10 95.53/81.31
    for dataset, mode, robust, standard in [
        ("salman_cifar10", "full-network", 98.68, 97.63),
        ("salman_cifar100", "full-network", 89.04, 85.99),
        ("salman_aircraft", "full-network", 86.08, 86.57),
        ("salman_cifar10", "fixed-feature", 95.53, 81.31),
    ]:
        assert table[(dataset, mode, "robust")] == robust and table[(dataset, mode, "standard")] == standard
        assert table[(dataset, mode, "robust - standard")] == pytest.approx(robust - standard)


def cifar10_run_row(source, seed, lr, epoch, acc, **extra) -> dict:
    """One logged epoch of a full-network CIFAR-10 run of the study, as a run table has it."""
    return dict(
        dataset="salman_cifar10",
        source=source,
        k=-1,
        size="full",
        seed=seed,
        recipe="salman",
        base_lr=lr,
        epoch=epoch,
        test_acc=acc,
        n=50000,
        classes=10,
        **extra,
    )


def test_best_learning_rate_per_cell_and_a_seed_paired_interval(salman_config):
    """Our runs: each cell at the learning rate with the best mean; robust - standard pairs seeds."""
    spec = grid.figure_statistics(salman_config, "salman2020/headline")
    spec = {**spec, "datasets": ["salman_cifar10"], "per_class": []}
    rows = []
    for source, eps_gain in (("r50_l2_0", 0.0), ("r50_l2_3", 2.0)):
        for lr, lr_gain in ((0.01, 0.0), (0.001, 5.0)):
            for seed, noise in ((0, 0.0), (1, 0.5), (2, -0.3)):
                acc = 80 + eps_gain + lr_gain + noise
                for epoch, drop in ((1, 10.0), (76, 0.0), (150, 1.0)):  # the best logged epoch is a run's number
                    rows.append(cifar10_run_row(source, seed, lr, epoch, acc - drop))
    summary = sweeps.summary(pd.DataFrame(rows), {**spec, "seeds": {"full": 3}})
    cells = summary[summary["role"] == "cell"].set_index("source")
    assert set(cells["base_lr"]) == {0.001}
    assert cells.loc["r50_l2_3", "mean"] == pytest.approx(85 + 2 + 0.2 / 3)
    delta = summary[(summary["role"] == "robust - standard") & (summary["arch"] == "resnet50")].iloc[0]
    assert delta["mean"] == pytest.approx(2.0) and delta["ci_low"] == pytest.approx(2.0) == delta["ci_high"]
    assert delta["runs"] == 3


def test_peak_table_margins_pair_seeds_and_sources_measured_here_give_their_accuracy(salman_config, tmp_path):
    """The peak table (figures/salman2020/peak): best robust - eps 0 and the best interior eps
    against the better end, seed-paired; a source without a published top-1 (pretrained here)
    takes the clean accuracy its runs recorded (source_acc)."""
    spec = grid.figure_statistics(salman_config, "salman2020/peak")
    spec = {**spec, "datasets": ["salman_cifar10"], "per_class": [], "seeds": {"full": 3}}
    spec["source_meta"] = {
        **spec["source_meta"],
        "r50_l2_0": {**spec["source_meta"]["r50_l2_0"], "imagenet_top1": None},
    }
    accuracy = {"r50_l2_0": 76.0, "r50_l2_0.5": 83.0, "r50_l2_1": 85.0, "r50_l2_3": 82.0, "r50_l2_5": 79.0}
    rows = [
        cifar10_run_row(source, seed, 0.01, 1, acc + noise, source_acc=70.0 if source == "r50_l2_0" else None)
        for source, acc in accuracy.items()
        for seed, noise in ((0, 0.0), (1, 1.0), (2, -1.0))
    ]
    summary = sweeps.summary(pd.DataFrame(rows), spec)
    cells = summary[summary["role"] == "cell"].set_index("source")
    assert cells.loc["r50_l2_0", "source_top1"] == 70.0 and cells.loc["r50_l2_3", "source_top1"] == 62.83
    margins = summary[summary["role"] != "cell"].set_index("role")
    assert margins.loc["robust - standard", "mean"] == pytest.approx(9.0)  # eps 1 against eps 0
    peak = margins.loc["peak - end"]
    assert (peak["eps"], peak["end_eps"], peak["mean"]) == (1.0, 5.0, pytest.approx(6.0))
    assert peak["ci_low"] == pytest.approx(6.0) == peak["ci_high"] and peak["runs"] == 3  # same noise per seed
    sweeps.write_table(
        summary, {**grid.figure_spec(salman_config, "salman2020/peak"), **spec}, tmp_path / "p.csv", tmp_path / "p.md"
    )
    table = pd.read_csv(tmp_path / "p.csv")
    assert list(table.filter(like=": transfer").columns) == [f"eps {e}: transfer" for e in ("0", "0.5", "1", "3", "5")]
    assert "+6.00 [+6.00, +6.00]" in (tmp_path / "p.md").read_text()


def test_compare_sets_our_cells_beside_the_published_ones(salman_config, published_runs):
    """figures/compare/salman2020/...: per cell our mean, theirs, the difference; no interval
    overlap where theirs is a single run."""
    spec = grid.figure_statistics(salman_config, "salman2020/headline")
    theirs = sweeps.summary(sweeps.select(published_runs, spec, "submission"), spec)
    ours = theirs.assign(mean=theirs["mean"] + 1.0, ci_low=theirs["mean"], ci_high=theirs["mean"] + 2.0, runs=3)
    both = sweeps.compare(ours, theirs)
    assert len(both) == len(theirs) and both["difference"].round(9).eq(1.0).all()
    assert both["ci_overlap"].isna().all()  # their cells are single runs: no interval to overlap
    row = both[(both["dataset"] == "salman_cifar10") & (both["role"] == "robust") & (both["arch"] == "max")]
    row = row[row["mode"] == "full-network"]
    assert list(row["mean_published"]) == [98.68] and list(row["mean_ours"]) == [99.68]


# ---- the workflow


def test_dry_run_lists_the_whole_grid_and_every_figure(tmp_path):
    out = snakemake(tmp_path, "-n", STUDY, "--cores", "1").stdout
    counts = job_counts(out)
    # E1 4 ResNets x 10 L2 eps x 12 datasets x 2 modes, E5 6 x 2 x 7 (full-network), E6 2 x 6 x 2 x 2, each at 2 lr
    assert counts["finetune"] == (4 * 10 * 12 * 2 + 6 * 2 * 7 + 2 * 6 * 2 * 2) * 2 == 2184
    assert counts["source"] == counts["fetch_checkpoint"] == 64 and counts["prepare"] == 12
    for fig in grid.in_all(grid_config := _config_with_studies(), STUDY):
        kind = grid_config["figures"][fig]["kind"]
        assert f"figures/{fig}.{'md' if kind in grid.TABLE_KINDS else 'pdf'}" in out
    assert "salman2020-full-lr0.01" not in out and "/salman-full-lr0.01/nfull/s0" in out


def test_studies_in_all_adds_a_study_to_all_and_the_dvc_stages(tmp_path, salman_config):
    """`snakemake` (all) and the DVC stages build Utrera et al.'s grid only, unless studies_in_all
    names another study; a name that is no study is one clear error before any job."""
    plain = job_counts(snakemake(tmp_path, "-n", "runs", "--cores", "1").stdout)
    both = job_counts(
        snakemake(tmp_path, "-n", "runs", "--cores", "1", "--config", "studies_in_all=[salman2020]").stdout
    )
    assert plain["finetune"] == len(grid.all_runs(salman_config)) == 6808
    assert both["finetune"] == 6808 + 2184 and both["prepare"] == plain["prepare"] + 12
    typo = snakemake(tmp_path, "-n", "--cores", "1", "--config", "studies_in_all=[salman2021]", check=False)
    assert typo.returncode != 0 and "studies_in_all: 'salman2021' is not in studies" in typo.stdout + typo.stderr


def _config_with_studies():
    from conftest import load_config

    config = load_config()
    studies.expand(config, REPO)
    return config


def test_every_salman_figure_table_and_claim_rebuilds_from_the_published_numbers(tmp_path):
    root = copy_workflow(tmp_path / "wf")
    snakemake(root, f"{STUDY}_published", f"figures/published/{STUDY}/claims.md", "--cores", "2")
    figures = root / "figures" / "published" / STUDY
    for fig in grid.in_all(_config_with_studies(), STUDY):
        name = fig.removeprefix(f"{STUDY}/")
        assert (figures / f"{name}.pdf").exists() or (figures / f"{name}.md").exists(), name
    headline = pd.read_csv(figures / "headline.csv").set_index(["dataset", "mode"])
    assert headline.loc[("salman_cifar10", "full-network"), "max: robust"] == 98.68
    claims = (figures / "claims.md").read_text()
    assert "5 checks: 5 supported, 0 inconclusive, 0 contradicted." in claims
    assert "single run: no interval" in claims


# ---- cost: one model for the plan and the time limits


def test_plan_and_time_limits_read_one_cost_model(salman_config):
    costs = plan.load_costs()
    device = plan.device_for(salman_config, costs)
    r50 = grid.Run("salman_pets", "r50_l2_3", -1, "full", 0, "salman", 0.01)
    wrn = grid.Run("salman_pets", "wrn50_4_l2_3", -1, "full", 0, "salman", 0.01)
    seconds = plan.run_seconds_of(salman_config, r50, device)
    assert plan.time_limit(salman_config, r50) == max(plan.MIN_MINUTES, -(-plan.SAFETY * seconds // 60))
    assert plan.time_limit(salman_config, r50, attempt=2) == 2 * plan.time_limit(salman_config, r50)
    assert plan.run_seconds_of(salman_config, wrn, device) > 5 * seconds  # WRN-50-4: ~8.6x the compute
    fixed = grid.Run("salman_pets", "r50_l2_3", 0, "full", 0, "salman", 0.01)
    assert plan.run_seconds_of(salman_config, fixed, device) < seconds  # the head only: faster


def test_plan_prints_the_cheapest_core(salman_config, capsys):
    plan.main(["figures/salman2020/core.pdf"])
    text = capsys.readouterr().out
    assert "80 fine-tuning runs" in text
    assert "| salman_caltech101 | full | 10 |" in text


def test_cluster_packs_keep_one_architecture_per_submission(salman_config):
    runs = grid.figure_runs(salman_config, "salman2020/width_full")
    packs = grid.cluster_packs(salman_config, runs)
    archs = {}
    for run in runs:
        archs.setdefault(packs[run.path], set()).add(salman_config["sources"][run.source]["arch"])
    assert all(len(a) == 1 for a in archs.values())
    assert len(set(packs.values())) < len(runs)


# ---- a real (tiny) run of the study's recipe through the workflow, on the CPU


def _robustness_checkpoint(path: Path, seed: int) -> None:
    """A ResNet-18 as the robustness library saves it (module.model.*, the attacker's copy, the
    normaliser), random weights: what the workflow fetches and converts for a study's source."""
    import torch
    import torchvision

    torch.manual_seed(seed)
    sd = torchvision.models.resnet18(num_classes=1000).state_dict()
    model = {f"module.model.{k}": v for k, v in sd.items()} | {f"module.attacker.model.{k}": v for k, v in sd.items()}
    model["module.normalizer.new_mean"] = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    model["module.normalizer.new_std"] = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    torch.save({"model": model, "epoch": 90}, path)


def test_a_tiny_study_trains_through_the_real_rules_on_the_cpu(tmp_path):
    """The study's recipe end to end: fetch and convert two robustness-format ResNet-18s, prepare a
    dataset stored for RandomResizedCrop, fine-tune both modes, aggregate, draw the sweep and
    write the headline table; the run files carry recipe, mode and learning rate."""
    import json

    import yaml

    root = copy_workflow(tmp_path / "wf")
    for eps, seed in ((0, 1), (1, 2)):
        _robustness_checkpoint(tmp_path / f"r18_{eps}.ckpt", seed)
    overlay = {
        "datasets": {
            "digits_rrc": {
                "loader": "digits",
                "classes": [5, 6, 7, 8, 9],
                "size": 16,
                "train_crop": "random_resized",
                "test_crop": 14,
                "split": {"seed": 0, "test_fraction": 0.3},
            }
        },
        "sources": {
            f"tiny_{eps}": {"url": f"file://{tmp_path}/r18_{eps}.ckpt", "arch": "resnet18", "norm": "l2", "eps": eps}
            for eps in (0, 1)
        },
        "salman": {
            "input_size": 16,
            "batch_size": 32,
            "eval_batch_size": 128,
            "schedule": [{"max_size": None, "epochs": 2, "eval_every": 1}],
            "per_class": ["digits"],
            "allow_cpu": True,
            "threads": 1,
        },
        "studies": {
            "tiny": {
                "recipe": "salman",
                "datasets": ["digits_rrc"],
                "modes": ["full-network", "fixed-feature"],
                "lr": [0.01],
                "seeds": {"count": 1, "base": 0, "step": 1},
                "sources": {"extra": ["tiny_0", "tiny_1"]},
            }
        },
        "figures": {
            "tiny/eps": {"kind": "sweep", "study": "tiny", "x": "eps", "title": "tiny sweep"},
            "tiny/headline": {"kind": "headline", "study": "tiny", "title": "tiny headline"},
        },
        "data": {"offline": True},
    }
    (root / "tiny.yaml").write_text(yaml.safe_dump(overlay))
    snakemake(
        root, "figures/tiny/eps.pdf", "figures/tiny/headline.md", "--cores", "2", configfiles=[root / "tiny.yaml"]
    )
    runs = sorted((root / "results" / "runs" / "digits_rrc").glob("*/*/nfull/s0.csv"))
    assert [p.relative_to(root / "results" / "runs").as_posix() for p in runs] == [
        f"digits_rrc/tiny_{eps}/salman-{mode}-lr0.01/nfull/s0.csv" for eps in (0, 1) for mode in ("fixed", "full")
    ]
    table = pd.read_csv(runs[0])
    assert list(table["epoch"]) == [1, 2] and set(table["recipe"]) == {"salman"}
    assert set(table["mode"]) == {"fixed-feature"} and set(table["base_lr"]) == {0.01}
    assert table["test_acc_class"].between(0, 100).all()  # the per-class metric, logged beside top-1
    meta = json.loads(runs[1].with_suffix(".json").read_text())
    assert meta["run"]["mode"] == "full-network" and meta["settings"]["train_crop"] == "random_resized"
    assert meta["settings"]["mean"] == [0.0] * 3 and meta["source_meta"]["arch"] == "resnet18"
    summary = pd.read_csv(root / "results" / "figures" / "tiny" / "headline" / "summary.csv")
    assert set(summary["role"]) == {"cell", "standard", "robust", "robust - standard"}
    assert (root / "figures" / "tiny" / "eps.pdf").read_bytes().startswith(b"%PDF")
    assert "tiny headline" in (root / "figures" / "tiny" / "headline.md").read_text()
