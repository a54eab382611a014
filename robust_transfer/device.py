"""Where a training job runs: device choice, one GPU per job, threads and deterministic kernels."""

from __future__ import annotations

import fcntl
import os
import tempfile

import torch

_LOCK = None  # keeps the GPU lock file open for the life of the process


def pick(want: str = "auto") -> torch.device:
    """CUDA when available, else the CPU. With several visible GPUs, take the first one no other
    process on this machine holds (Snakemake caps concurrent GPU jobs but assigns no device)."""
    global _LOCK
    if want == "cpu" or (want == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    count = torch.cuda.device_count()
    if count == 0:
        raise RuntimeError("device: cuda requested but no GPU is visible; set finetune.device to auto or cpu")
    for i in range(count):
        f = open(os.path.join(tempfile.gettempdir(), f"robust_transfer-gpu{i}-uid{os.getuid()}.lock"), "w")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            continue
        _LOCK = f
        return torch.device("cuda", i)
    return torch.device("cuda", 0)  # more jobs than GPUs (no --resources gpu=N cap): share


def setup(threads: int = 1, deterministic: bool = True) -> None:
    """CPU threads of this job, and deterministic kernels where PyTorch has them. CPU runs are
    then bit-identical; on GPUs a few backward kernels (e.g. adaptive average pooling) have no
    deterministic version and only warn."""
    torch.set_num_threads(threads)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        # Deterministic mode also fills every new tensor with NaN, a guard against kernels that
        # read memory they never wrote; ours write all they read, and the fills cost ~5 % of a
        # CPU training step (measured: docs/benchmarks.md).
        torch.utils.deterministic.fill_uninitialized_memory = False
        torch.backends.cudnn.benchmark = False


def name(device: torch.device) -> str:
    import platform

    return torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
