"""The authors' own per-run logs as a run table of ours, so any figure can be rebuilt from them.

April-2020 logs: github.com/utrerf/robust_transfer_learning at commit e90ed58 (results/
consolidated_results.csv). Columns: epoch, nat_prec1 (test acc %), nat_loss, train_prec1,
train_loss, time, source_eps (0 natural, 3 L2 3, 4 Linf 4/255, 8 Linf 8/255, -1 from scratch),
target_ds, num_training_images, unfrozen_blocks (the authors' 6 means our 9 blocks; -1 from
scratch), seed.
"""

from __future__ import annotations

import pandas as pd

from .data import LOADERS
from .grid import FULL
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
