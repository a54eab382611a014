"""The demo through SLURM, one fine-tuning run per submission against the default packing, on a
throwaway one-node test cluster (tests/slurm_cluster.py: Debian's slurm-wlm, two fake GPUs; as
root, installed with apt when absent):

    python benchmarks/cluster.py                 # `all` of the demo, both ways, in fresh copies
    python benchmarks/cluster.py --target figures/table2.md

Each way runs `snakemake <target> --profile profiles/slurm --workflow-profile profiles/demo` in
its own fresh copy of the workflow (the unpacked one with `--config 'pack={cluster_hours: 0.01}'`,
a pack smaller than any run), then the local demo command in a third copy; prints sbatch
submissions (slurmctld's log), wall time, the load average, and whether every run's metrics
(`time` excluded) and every figure's summary equal the local run's.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from slurm_cluster import SlurmCluster  # noqa: E402

from robust_transfer.files import copy_workflow  # noqa: E402

SLURM = ["--profile", "profiles/slurm", "--workflow-profile", "profiles/demo", "--slurm-no-account"]
SLURM += list(SlurmCluster.SNAKEMAKE_ARGS)


def run(cmd, root: Path, env=None) -> float:
    start = time.time()
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return time.time() - start


def numbers(root: Path) -> dict[str, str]:
    """Every run's metrics without the time column, and every figure's summary, as text."""
    import pandas as pd

    out = {}
    for path in sorted((root / "results" / "runs").rglob("*.csv")):
        out[str(path.relative_to(root))] = pd.read_csv(path).drop(columns="time").to_csv(index=False)
    for path in sorted((root / "results" / "figures").glob("*/summary.csv")):
        out[str(path.relative_to(root))] = path.read_text()
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", default="all")
    a = p.parse_args()
    snakemake = [sys.executable, "-m", "snakemake", a.target]
    with tempfile.TemporaryDirectory(prefix="cluster-") as tmp, SlurmCluster(real_memory=65536) as cluster:
        rows, results = [], {}
        ways = [
            ("one run per submission", [*SLURM, "--config", "pack={cluster_hours: 0.01}"]),
            ("packed (default)", SLURM),
        ]
        for name, args in ways:
            root = copy_workflow(Path(tmp) / name.split()[0] / "workflow")
            before = cluster.submissions()
            seconds = run([*snakemake, *args], root, cluster.env)
            rows.append((name, cluster.submissions() - before, seconds, os.getloadavg()))
            results[name] = numbers(root)
        local = copy_workflow(Path(tmp) / "local" / "workflow")
        seconds = run([*snakemake, "--workflow-profile", "profiles/demo"], local)
        rows.append(("local, no SLURM", 0, seconds, os.getloadavg()))
        mine = numbers(local)
    print(f"# {' '.join([Path(sys.executable).name, *sys.argv])}; {os.cpu_count()} cores")
    print("| how | sbatch submissions | wall | load average at its end (1, 5, 15 min) |\n|---|---|---|---|")
    for name, submissions, seconds, load in rows:
        print(f"| {name} | {submissions} | {seconds:.0f} s | {', '.join(f'{x:.1f}' for x in load)} |")
    for name, got in results.items():
        verdict = "equal" if got == mine else "DIFFER FROM"
        print(f"{name}: {len(got)} files (runs' metrics, figures' summaries) {verdict} the local run's")


if __name__ == "__main__":
    main()
