"""Where a training job runs: device choice, one GPU per job, threads and deterministic kernels."""

from __future__ import annotations

import fcntl
import os
import tempfile

import torch

_LOCK = None  # (open GPU lock file, index): held for the life of the process


class NoGPU(RuntimeError):
    """A training job that needs a GPU found none (raised before it loads anything)."""


def pick(want: str = "auto", allow_cpu: bool = False, section: str = "finetune") -> torch.device:
    """The device of a training job. want: the config's `device` (auto: CUDA when available;
    cuda: a GPU or nothing; cpu: the CPU, asked for by name). With auto and no visible GPU the
    job trains on the CPU only if `allow_cpu` (the config's `<section>.allow_cpu`; the paper's
    config says false: a grid that silently trains on CPUs loses weeks), else NoGPU names what
    was looked at and the fix. Call it first, before loading data or weights.

    With several visible GPUs, take the first one no other process on this machine holds
    (Snakemake caps concurrent GPU jobs but assigns no device)."""
    global _LOCK
    if want == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        if want == "auto" and allow_cpu:
            return torch.device("cpu")
        raise NoGPU(no_gpu_message(want, section))
    if _LOCK is not None:  # a runner's later runs (robust_transfer.runner): the GPU it holds
        return torch.device("cuda", _LOCK[1])
    count = torch.cuda.device_count()
    for i in range(count):
        f = open(os.path.join(tempfile.gettempdir(), f"robust_transfer-gpu{i}-uid{os.getuid()}.lock"), "w")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            continue
        _LOCK = (f, i)
        return torch.device("cuda", i)
    return torch.device("cuda", 0)  # more jobs than GPUs (no --resources gpu=N cap): share


def no_gpu_message(want: str, section: str) -> str:
    """What a job without a GPU looked at, and the ways out."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    build = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build, without CUDA"
    asked = (
        f"{section}.device is cuda" if want == "cuda" else f"{section}.device is auto and {section}.allow_cpu is false"
    )
    switch = f"{{allow_cpu: true{', device: auto' if want == 'cuda' else ''}}}"
    return (
        f"no GPU is visible to this job and {asked}, so it stops before loading anything. "
        f"Looked at: torch.cuda.is_available() is False; "
        f"CUDA_VISIBLE_DEVICES is {'unset' if visible is None else repr(visible)}; "
        f"torch {torch.__version__} is {build}. "
        "Fix: run it on a GPU node (a GPU job of your cluster, e.g. --workflow-profile profiles/slurm), "
        f"or train on the CPU on purpose (a paper run takes hours to days there): set {section}: {switch}, "
        f"for one command with --config '{section}={switch}', or in an overlay "
        f"(echo '{section}: {switch}' > cpu.yaml; snakemake --configfile cpu.yaml); "
        "changing allow_cpu reruns nothing."
    )


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
