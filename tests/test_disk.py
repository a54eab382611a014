"""Where a training job writes: folders checked before training, room on disk, and writes during
training that fail naming their path. Real folders, real file systems; as root, a folder is
made unwritable with `chattr +i` (permissions do not stop root)."""

from __future__ import annotations

import shutil
import subprocess
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from conftest import missing

from robust_transfer import disk, train
from robust_transfer.models import prepare_for_transfer, resnet50


@contextmanager
def immutable(folder):
    """`folder` unwritable, even for root, while inside (chattr +i; ext4 and most others)."""
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        missing("chattr +i is not permitted here: cannot make a folder unwritable for root")
    try:
        yield folder
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_a_writable_folder_is_made_and_left_clean(tmp_path):
    folder = tmp_path / "results" / "runs" / "a"
    disk.check_folders([folder, folder])
    assert folder.is_dir() and list(folder.iterdir()) == []  # the probe file is gone


def test_a_file_where_a_folder_should_be_fails_naming_it(tmp_path):
    (tmp_path / "resume").write_text("not a folder")
    with pytest.raises(disk.Unwritable, match=r"resume/runs/a \(not a folder: .*resume is a file\)"):
        disk.check_folders([tmp_path / "results", tmp_path / "resume" / "runs" / "a"])
    assert (tmp_path / "results").is_dir()  # the folders before it were fine


def test_a_read_only_folder_fails_naming_it(tmp_path):
    folder = tmp_path / "runs"
    folder.mkdir()
    with immutable(folder), pytest.raises(disk.Unwritable) as err:
        disk.check_folders([folder / "k3", tmp_path])
    text = str(err.value)
    assert f"{folder}/k3 (read-only: Operation not permitted)" in text and "chattr -i" in text


def test_too_little_space_fails_with_the_free_and_needed_megabytes(tmp_path):
    """The real free space of tmp_path's file system (shutil.disk_usage): a need just above it
    fails, naming the folder and both sizes; folders on one file system add their needs up."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    free = shutil.disk_usage(tmp_path).free
    disk.check_space([(a, 1000), (b, 1000)])
    with pytest.raises(disk.Unwritable, match=rf"in {a}: .* MB free, .* MB needed"):
        disk.check_space([(a, free + 10**9)])
    with pytest.raises(disk.Unwritable) as err:
        disk.check_space([(a, free // 2 + 10**9), (b, free // 2 + 10**9)])  # each fits, both do not
    assert f"{a}, {b}" in str(err.value) and "MB needed" in str(err.value)


def test_the_resume_state_size_is_estimated_from_above_but_close(tmp_path):
    """state_bytes (what the free-space check asks for) against a real saved state: never less,
    at most 15 % more; k=16 (every weight has momentum) and k=0 (the head only)."""
    for k in (16, 0):
        torch.manual_seed(0)
        model = prepare_for_transfer(resnet50(width_per_group=8), 10, k)
        cfg = {"epochs": 1, "eval_epochs": [1], "batch_size": 8, "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4}
        cfg |= {"lr_drops": 3, "lr_gamma": 0.1, "input_size": 8, "amp": "none"}
        cfg["augment"] = {"pad": 0, "flip": False, "jitter": 0, "degrees": 0}
        data = (np.zeros((8, 8, 8, 3), np.uint8), np.arange(8) % 10)
        loop = train.start(model, data, data, cfg, 0, torch.device("cpu"))
        train.train_epoch(loop)  # momentum buffers exist after a step
        resume = train.Resume(tmp_path / f"k{k}.state", "key")
        train.save_state(loop, resume)
        size, estimate = resume.path.stat().st_size, disk.state_bytes(model)
        print(f"k={k}: state {size} bytes, estimate {estimate}")
        assert size <= estimate <= 1.15 * size + 100_000, (k, size, estimate)


def test_a_save_that_fails_during_training_names_its_path(tmp_path):
    """A resume state saved into a folder that became read-only mid-run: the error names the
    file (not torch's bare "File ... cannot be opened") and the fix."""
    torch.manual_seed(0)
    model = prepare_for_transfer(resnet50(width_per_group=8), 5, 0)
    cfg = {"epochs": 1, "batch_size": 8, "lr": 0.1, "momentum": 0.9, "weight_decay": 0.0, "input_size": 8}
    cfg |= {
        "amp": "none",
        "lr_drops": 3,
        "lr_gamma": 0.1,
        "augment": {"pad": 0, "flip": False, "jitter": 0, "degrees": 0},
    }
    data = (np.zeros((8, 8, 8, 3), np.uint8), np.arange(8) % 5)
    loop = train.start(model, data, data, cfg, 0, torch.device("cpu"))
    folder = tmp_path / "resume"
    folder.mkdir()
    with immutable(folder), pytest.raises(disk.Unwritable) as err:
        train.save_state(loop, train.Resume(folder / "run.state", "key"))
    assert f"writing the resume state {folder}/run.state.tmp failed" in str(err.value)
    assert "MB free there" in str(err.value) and "Fix:" in str(err.value)
