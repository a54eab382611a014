"""Where a training job runs: with no GPU visible, a job that needs one fails at once, saying
what it looked at and how to fix it; the CPU only when asked for or allowed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

# Run in a fresh interpreter with no GPU visible (CUDA_VISIBLE_DEVICES=""), so that the test
# means the same on a GPU machine; torch reads the variable when CUDA first initialises.
CASES = r"""
import json
from robust_transfer import device
out = {}
for want, allow in [("auto", False), ("auto", True), ("cpu", False), ("cuda", True)]:
    try:
        out[f"{want} {allow}"] = str(device.pick(want, allow, "finetune"))
    except device.NoGPU as err:
        out[f"{want} {allow}"] = "NoGPU: " + str(err)
try:
    device.pick("auto", False, "pretrain")
except device.NoGPU as err:
    out["pretrain"] = str(err)
print(json.dumps(out))
"""


def test_no_gpu_fails_unless_the_cpu_is_allowed_or_asked_for():
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, "-c", CASES], capture_output=True, text=True, env=env, check=True)
    out = json.loads(proc.stdout.splitlines()[-1])
    assert out["auto True"] == "cpu" and out["cpu False"] == "cpu"
    auto = out["auto False"]
    assert auto.startswith(
        "NoGPU: no GPU is visible to this job and finetune.device is auto and finetune.allow_cpu is false"
    )
    for needle in (
        "torch.cuda.is_available() is False",
        "CUDA_VISIBLE_DEVICES is ''",
        "run it on a GPU node",
        "echo 'finetune: {allow_cpu: true}' > cpu.yaml",
        "--configfile cpu.yaml",
        "--config 'finetune={allow_cpu: true}'",
    ):
        assert needle in auto, needle
    cuda = out["cuda True"]
    assert "finetune.device is cuda" in cuda and "finetune: {allow_cpu: true, device: auto}" in cuda
    assert "pretrain: {allow_cpu: true}" in out["pretrain"] and "finetune" not in out["pretrain"]
