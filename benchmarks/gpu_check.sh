#!/usr/bin/env bash
# The GPU measurements docs/benchmarks.md asks for ("On a GPU"), as one command that ends within
# 8 minutes on one H100 (each step has its own time limit; a step that runs out is recorded as
# such and the next one starts):
#
#   bash benchmarks/gpu_check.sh [OUT]            # OUT: folder for the outputs (default $OUT or gpu_check)
#
# On a machine without network: install the package and its pure-Python dependencies from a
# wheel folder first (pip install --no-index --find-links wheels -e .); torch and torchvision
# are the machine's own. Nothing here is invented: every number lands in OUT as printed by the
# benchmark scripts, with nvidia-smi's view of the card and its memory every half second.
#
# Not yet run: no GPU has been lent to this project's sessions since it was written.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-gpu_check}}
mkdir -p "$out"
py=${PYTHON:-python3}
start=$(date +%s)

step() { # name, seconds, command...
  local name=$1 limit=$2
  shift 2
  echo "+ $* (limit ${limit} s, at $(($(date +%s) - start)) s)" | tee "$out/$name.txt"
  timeout "$limit" "$@" >>"$out/$name.txt" 2>&1
  echo "exit $? after $(($(date +%s) - start)) s" | tee -a "$out/$name.txt"
}

nvidia-smi >"$out/nvidia-smi.txt" 2>&1
"$py" -c "import torch, torchvision; print(torch.__version__, torchvision.__version__, torch.cuda.get_device_name())" \
  >"$out/versions.txt" 2>&1
nvidia-smi --query-gpu=timestamp,memory.used,utilization.gpu --format=csv -lms 500 >"$out/memory.csv" 2>&1 &
smi=$!

# 1. One n = 100 run at 224 px (k = 3), ours against the authors' pipeline, fp32 and bf16:
#    wall, start-up, training and evaluation images/s of each, and the speed-up.
step side_by_side_fp32 150 "$py" benchmarks/side_by_side.py --device cuda --input-size 224 --n 100 --k 3 \
  --threads 8 --amp none --epochs 20 --eval-every 10 --json "$out/side_by_side_fp32.json"
step side_by_side_bf16 60 "$py" benchmarks/side_by_side.py --device cuda --input-size 224 --n 100 --k 3 \
  --threads 8 --amp bf16 --epochs 20 --eval-every 10 --only ours --json "$out/side_by_side_bf16.json"
# 2. Training images/s per k (the blocks that train) and evaluation images/s, ours only, fp32.
for k in 0 1 3 9 16; do
  step "images_per_s_k$k" 30 "$py" benchmarks/side_by_side.py --device cuda --input-size 224 --n 3200 --k "$k" \
    --threads 8 --amp none --epochs 2 --eval-every 2 --only ours --json "$out/images_per_s_k$k.json"
done
# 3. An n = 100 run alone and amortised inside a pack: start-up of one job, Snakemake's cost
#    per job, and a sequence of runs through Snakemake one per process and packed in a runner.
step overhead 150 "$py" benchmarks/overhead.py --device cuda --input-size 224 --threads 8 --repeats 1 --snakemake \
  --runs 3 --epochs 100 --eval-every 20

kill "$smi" 2>/dev/null
echo "peak GPU memory (MiB, nvidia-smi): $(awk -F', ' 'NR > 1 {gsub(/ MiB/, "", $2); if ($2 > m) m = $2} END {print m}' "$out/memory.csv")" |
  tee "$out/summary.txt"
grep -h "speedup\|images/s\|wall" "$out"/side_by_side_*.txt "$out"/images_per_s_k*.txt 2>/dev/null | tee -a "$out/summary.txt"
echo "done in $(($(date +%s) - start)) s" | tee -a "$out/summary.txt"
