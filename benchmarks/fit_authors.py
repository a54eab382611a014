"""The authors' own speed, fitted to their per-run logs: the basis of costs.yaml's GPU estimate.

    python benchmarks/fit_authors.py ../shared/reference/utrera2020_april_logs.csv

Their logs (April 2020, 4,812 runs, 1,369 GPU-hours) hold the cumulative wall time at every
logged epoch. Between two logged epochs a run trains (e2 - e1) epochs and evaluates once:
  seconds = (e2 - e1) x (epoch_seconds + n / train[k]) + test_size / eval
fitted by least squares over every interval of every run. run_seconds is the median excess of
the first logged epoch over that model (warm-up; their process start-up is not in the logs).
Prints the constants and how well they reproduce the logs' total and per-n means.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

TEST = {"cifar10": 10000, "cifar100": 10000, "svhn": 26032, "mnist": 10000, "fmnist": 10000, "kmnist": 10000}
KS = {0: 0, 1: 1, 3: 3, -1: 16}  # their unfrozen_blocks -> our k (-1: from scratch, every block)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("logs", help="results/consolidated_results.csv of utrerf/robust_transfer_learning at e90ed58")
    logs = pd.read_csv(p.parse_args().logs)
    keys = ["source_eps", "target_ds", "num_training_images", "unfrozen_blocks", "seed"]
    runs = [g.sort_values("epoch") for _, g in logs.groupby(keys)]
    ks = sorted(set(logs["unfrozen_blocks"]), key=lambda k: KS[k])
    rows, seconds = [], []
    for g in runs:
        n, k, test = g["num_training_images"].iat[0], g["unfrozen_blocks"].iat[0], TEST[g["target_ds"].iat[0]]
        epochs, time = g["epoch"].to_numpy(), g["time"].to_numpy()
        for de, dt in zip(np.diff(epochs), np.diff(time)):
            x = np.zeros(len(ks) + 2)
            x[ks.index(k)], x[-2], x[-1] = de * n, de, test  # seconds per image of k, per epoch, per test image
            rows.append(x)
            seconds.append(dt)
    coef, *_ = np.linalg.lstsq(np.array(rows), np.array(seconds), rcond=None)
    per_image, epoch_s, eval_s = coef[: len(ks)], coef[-2], coef[-1]

    def model(g, start=0.0):
        n, k, test = g["num_training_images"].iat[0], g["unfrozen_blocks"].iat[0], TEST[g["target_ds"].iat[0]]
        e = g["epoch"].to_numpy()
        return start + e[-1] * (epoch_s + n * per_image[ks.index(k)]) + len(e) * test * eval_s

    first = [g["time"].iat[0] - model(g.iloc[:1]) for g in runs]
    start = float(np.median(first))
    train = {KS[k]: round(1 / a) for k, a in zip(ks, per_image)}
    print(f"train images/s by k: {train}; epoch_seconds {epoch_s:.2f}; eval images/s {1 / eval_s:.0f}; ", end="")
    print(f"run_seconds {start:.1f}")
    total = sum(g["time"].iat[-1] for g in runs)
    fitted = sum(model(g, start) for g in runs)
    print(f"all {len(runs)} runs: {total / 3600:.0f} h in the logs, {fitted / 3600:.0f} h by the model")
    by_n = pd.DataFrame(
        {"n": [g["num_training_images"].iat[0] for g in runs], "logs": [g["time"].iat[-1] for g in runs]}
    ).assign(model=[model(g, start) for g in runs])
    print(by_n.groupby("n").mean().round().astype(int).to_string())


if __name__ == "__main__":
    main()
