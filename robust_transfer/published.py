"""The authors' own per-run logs as a run table of ours, so any figure can be rebuilt from them.

April-2020 logs: github.com/utrerf/robust_transfer_learning at commit e90ed58 (results/
consolidated_results.csv). Columns: epoch, nat_prec1 (test acc %), nat_loss, train_prec1,
train_loss, time, source_eps (0 natural, 3 L2 3, 4 Linf 4/255, 8 Linf 8/255, -1 from scratch),
target_ds, num_training_images, unfrozen_blocks (the authors' 6 means our 9 blocks; -1 from
scratch), seed.
"""

from __future__ import annotations

import pandas as pd

from .datasets import LOADERS
from .grid import FULL, MODE_K
from .stats import RUN_KEYS

SOURCES = {0: "natural", 3: "l2_3", 4: "linf_4", 8: "linf_8", -1: "scratch"}
# Their label 6 fine-tunes layer3 and layer4: 9 blocks. From scratch trains the whole network,
# which is our k = 16 (every block; with all blocks the stem trains too).
BLOCKS = {0: 0, 1: 1, 3: 3, 6: 9, -1: 16}
# Their target_ds values are our loader names: the full training set's size and the class
# count come from the loader records.
FULL_SIZE = {name: loader.train_size for name, loader in LOADERS.items() if loader.train_size}
CLASSES = {name: loader.classes for name, loader in LOADERS.items()}


COLUMNS = ["target_ds", "source_eps", "unfrozen_blocks", "num_training_images", "seed", "epoch"]
COLUMNS += ["nat_prec1", "nat_loss", "train_prec1", "train_loss", "time"]


def to_run_table(logs: pd.DataFrame) -> pd.DataFrame:
    """Our tidy run-table schema (see stats.RUN_KEYS, stats.METRIC_COLUMNS) from their logs."""
    missing = [c for c in COLUMNS if c not in logs.columns]
    if missing:
        raise ValueError(
            f"the published logs lack columns {missing}: expected the authors' consolidated_results.csv "
            f"format ({', '.join(COLUMNS)}); check published.url"
        )
    n = logs["num_training_images"].astype(int)
    full = n == logs["target_ds"].map(FULL_SIZE)
    out = pd.DataFrame(
        {
            "dataset": logs["target_ds"],
            "source": logs["source_eps"].astype(int).map(SOURCES),
            "k": logs["unfrozen_blocks"].astype(int).map(BLOCKS),
            "size": n.astype(str).where(~full, FULL),
            "n": n,
            "seed": logs["seed"].astype(int),
            "epoch": logs["epoch"].astype(int),
            "test_acc": logs["nat_prec1"].astype(float),
            "test_loss": logs["nat_loss"].astype(float),
            "train_acc": logs["train_prec1"].astype(float),
            "train_loss": logs["train_loss"].astype(float),
            "time": logs["time"].astype(float),
            "classes": logs["target_ds"].map(CLASSES),
        }
    )
    unknown = out[["source", "k", "classes"]].isna().any(axis=1)
    if unknown.any():
        examples = logs[unknown].head(3).to_dict("records")
        raise ValueError(f"{int(unknown.sum())} log rows have unknown source_eps/unfrozen_blocks/target_ds: {examples}")
    out["classes"] = out["classes"].astype(int)
    out["epochs"] = out.groupby(RUN_KEYS)["epoch"].transform("max")
    return out


# ---------------------------------------------------------------------------------------------
# Salman et al. (NeurIPS 2020): their published tables (reference/salman2020, parsed from the
# submission's LaTeX and the final code's best-params table) as a run table of the study.

# Their dataset names (the code's) -> our loaders
SALMAN_LOADERS = {"birds": "birdsnap", "stanford_cars": "cars", "SUN397": "sun397"}
# Where one cell is in several submission tables (rounding differs by 0.01), the first of these wins
SALMAN_TABLES = [
    "small_datasets_Finetuning.tex",
    "small_datasets_LogisticRegression.tex",
    "small_datasets_linf_models.tex",
    "transfer-vary-arch-all-datasets.tex",
    "transfer-vary-arch-on-cifar10-and-100.tex",
    "headline-table_Finetuning.tex",
    "headline-table_LogisticRegression.tex",
]
SALMAN_EPOCHS = 150


def salman_run_table(transfer: pd.DataFrame, best: pd.DataFrame, datasets: dict[str, dict]) -> pd.DataFrame:
    """One row per published cell: every cell of the submission's tables at native resolution
    (origin `submission`, learning rate unknown: NaN; its `table` named) and every row of the final
    best-params table (origin `final`, with its learning rate). `datasets`: the study's dataset
    entries (name -> {loader: ...}): each of their datasets maps to the study's dataset of its
    loader. The accuracy is in test_acc and, on the datasets whose submission numbers are mean
    per-class accuracy (metric column), in test_acc_class too."""
    from .studies import source_name

    by_loader = {spec["loader"]: name for name, spec in datasets.items()}

    def dataset(theirs: pd.Series) -> pd.Series:
        loader = theirs.map(lambda d: SALMAN_LOADERS.get(d, d))
        unknown = sorted(set(loader[~loader.isin(by_loader)]))
        if unknown:
            raise ValueError(f"published Salman cells of datasets {unknown} have no dataset in the study (loaders)")
        return loader.map(by_loader)

    cells = transfer[(transfer["selection"] == "cell") & (transfer["input_resolution"] == "native")].copy()
    cells["_order"] = cells["table"].map({t: i for i, t in enumerate(SALMAN_TABLES)})
    cells = cells.sort_values("_order", kind="stable").drop_duplicates(["dataset", "arch", "norm", "eps", "mode"])
    sub = pd.DataFrame(
        {
            "dataset": dataset(cells["dataset"]),
            "source": [source_name(a, n, e) for a, n, e in zip(cells["arch"], cells["norm"], cells["eps"])],
            "k": cells["mode"].map(MODE_K),
            "base_lr": float("nan"),
            "test_acc": cells["accuracy"].astype(float),
            "origin": "submission",
            "table": cells["table"],
        }
    )
    final = pd.DataFrame(
        {
            "dataset": dataset(best["dataset"]),
            "source": [source_name(a, "l2", e) for a, e in zip(best["arch"], best["eps"])],
            "k": best["mode"].map(MODE_K),
            "base_lr": best["lr"].astype(float),
            "test_acc": best["accuracy"].astype(float),
            "origin": "final",
            "table": "best_params_per_dataset_per_arch.md",
        }
    )
    out = pd.concat([sub, final], ignore_index=True)
    out.insert(3, "size", FULL)
    out.insert(4, "seed", 0)
    out.insert(5, "recipe", "salman")
    return out.assign(epoch=SALMAN_EPOCHS, epochs=SALMAN_EPOCHS)


def with_dataset_facts(runs: pd.DataFrame, facts: pd.DataFrame, datasets: dict[str, dict]) -> pd.DataFrame:
    """n (training images) and classes from their datasets.csv, and test_acc_class where their
    submission's number is mean per-class accuracy (`metric`)."""
    facts = facts.assign(loader=facts["dataset"].map(lambda d: SALMAN_LOADERS.get(d, d))).set_index("loader")
    loader = runs["dataset"].map({name: spec["loader"] for name, spec in datasets.items()})
    per_class = loader.map(facts["metric_submission"]).eq("mean per-class accuracy") & runs["origin"].eq("submission")
    return runs.assign(
        n=loader.map(facts["train_size"]),
        classes=loader.map(facts["classes"]).astype(int),
        metric=per_class.map({True: "mean per-class", False: "top-1"}),
        test_acc_class=runs["test_acc"].where(per_class),
        test_loss=float("nan"),
        train_loss=float("nan"),
    )
