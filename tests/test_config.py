"""The active config: a user's --configfile adds to the profile's overlay, numbers typed on the
command line stay numbers, and a config error is one short line per problem.

Real Snakemake dry runs of the real workflow (copies of it), and robust_transfer.configs on the
real schema."""

from __future__ import annotations

import subprocess

import pytest
import yaml
from conftest import REPO, SNAKEMAKE, copy_workflow, job_counts, load_config
from snakemake.utils import update_config

from robust_transfer import configs, grid

SCHEMA = configs.load_schema(REPO / "schemas" / "config.schema.yaml")


@pytest.fixture(scope="module")
def workflow(tmp_path_factory):
    return copy_workflow(tmp_path_factory.mktemp("config") / "workflow")


def dry_run(root, *args):
    """`snakemake -n ARGS` in the workflow copy, as a user types it there."""
    return subprocess.run([*SNAKEMAKE, "-n", *args], cwd=root, capture_output=True, text=True)


@pytest.mark.slow  # Snakemake dry runs
def test_configfile_adds_to_the_demo_profile(workflow):
    """--workflow-profile profiles/demo --configfile mine.yaml: the demo's overlay, then mine on
    top (Snakemake alone drops the profile's overlay: 6,808 fine-tuning runs of the paper)."""
    demo = dry_run(workflow, "--workflow-profile", "profiles/demo")
    assert demo.returncode == 0, demo.stderr[-3000:]
    assert job_counts(demo.stdout)["finetune"] == 82
    (workflow / "mine.yaml").write_text("grid: {sizes: [20]}\n")
    mine = dry_run(workflow, "--workflow-profile", "profiles/demo", "--configfile", "mine.yaml")
    assert mine.returncode == 0, mine.stderr[-3000:]
    counts = job_counts(mine.stdout)
    # the demo's datasets, sources and epochs, with mine's one size (Table 2's full sets stay)
    expected = load_config("config.demo.yaml")
    update_config(expected, {"grid": {"sizes": [20]}})
    assert counts["finetune"] == len(grid.all_runs(expected)) < 82, counts
    assert "config: config.yaml + config.demo.yaml + mine.yaml" in mine.stdout + mine.stderr
    # the composed config is what cluster jobs get too: a rerun with the full list plans the same
    explicit = dry_run(workflow, "--workflow-profile", "profiles/demo", "--configfile", "config.demo.yaml", "mine.yaml")
    assert job_counts(explicit.stdout) == counts


@pytest.mark.slow  # Snakemake dry runs
def test_configfile_adds_to_the_paper_config(workflow):
    """With the default profile (the paper), an overlay adds to config.yaml, as before."""
    (workflow / "one.yaml").write_text("grid: {datasets: [cifar10], sizes: [100]}\nfigures: {}\n")
    proc = dry_run(workflow, "results/runs/cifar10/natural/k3/n100/s20000000.csv", "--configfile", "one.yaml")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert job_counts(proc.stdout)["finetune"] == 1


@pytest.mark.slow  # Snakemake dry runs
def test_numbers_on_the_command_line_keep_their_type(workflow):
    """--config parses nested values as text: '0.05'. The workflow reads them as YAML where the
    schema wants a number, a list, a boolean or null."""
    proc = dry_run(
        workflow,
        "--workflow-profile",
        "profiles/demo",
        "--config",
        "finetune={lr: 0.05, head_std: 0.5}",
        "grid={sizes: [20, full]}",
        "paper_ylim=true",
        "cost={max_device_hours: null}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["finetune"].update(lr="0.05", head_std="0.5")
    config["grid"]["sizes"] = ["20", "full"]
    config["paper_ylim"] = "true"
    config["cost"]["max_device_hours"] = "null"
    changed = configs.coerce(config, SCHEMA)
    assert sorted(changed) == sorted(
        ["finetune.lr", "finetune.head_std", "grid.sizes[0]", "paper_ylim", "cost.max_device_hours"]
    )
    assert config["finetune"]["lr"] == 0.05 and isinstance(config["finetune"]["lr"], float)
    assert config["grid"]["sizes"] == [20, "full"]
    assert config["paper_ylim"] is True and config["cost"]["max_device_hours"] is None
    assert configs.problems(config, SCHEMA) == []


def test_text_the_schema_wants_stays_text():
    """A string the schema accepts is never retyped (a dataset named '10', a note 'null')."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["sources"]["natural"]["note"] = "3"
    config["title_tag"] = "null"
    assert configs.coerce(config, SCHEMA) == []
    assert config["sources"]["natural"]["note"] == "3" and config["title_tag"] == "null"


@pytest.mark.slow  # Snakemake dry runs
def test_a_config_error_is_one_short_line_per_problem(workflow):
    """A typo in a top-level key, a wrong enum and a wrong type: one line each with the key, what
    is wrong and the closest valid name; no schema dump (it was 1,704 lines)."""
    (workflow / "typo.yaml").write_text("finetun: {lr: 0.05}\nfinetune: {amp: bf15, lr: fast}\ngrid: {sizez: [3]}\n")
    proc = dry_run(workflow, "--workflow-profile", "profiles/demo", "--configfile", "typo.yaml")
    assert proc.returncode != 0
    err = proc.stdout + proc.stderr
    assert "finetun: unknown key; did you mean 'finetune'?" in err
    assert "finetune.amp: 'bf15' is not one of bf16, none; did you mean 'bf16'?" in err
    assert "finetune.lr: 'fast' is not a number" in err
    assert "grid.sizez: unknown key; did you mean 'sizes'?" in err
    assert "the config has 4 problems" in err
    assert len(err.splitlines()) < 25, err
    assert "$defs" not in err and "additionalProperties" not in err


def test_an_unknown_key_in_a_section_built_on_a_definition_is_the_only_line():
    """finetune's keys come from the schema's `training` definition and its own: a stray key
    there is one line, not one per valid key (it was 15 lines: every training key 'unknown')."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["finetune"]["packs"] = {"runs": 1}
    assert configs.problems(config, SCHEMA) == ["finetune.packs: unknown key"]
    config["finetune"]["threads"], config["finetune"]["thread"] = "x", 2  # typo'd key beside a valid one
    assert "finetune.thread: unknown key; did you mean 'threads'?" in configs.problems(config, SCHEMA)


def test_problems_name_nested_keys_and_missing_ones():
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["finetune"]["augment"]["pda"] = 4
    del config["aggregate"]["bootstrap_seed"]
    config["sources"]["l2_3"]["train"] = {"dataset": "cifar10"}  # two recipes, and no seed
    lines = configs.problems(config, SCHEMA)
    assert "finetune.augment.pda: unknown key; did you mean 'pad'?" in lines
    assert "aggregate: 'bootstrap_seed' is missing (a required key)" in lines
    assert any(line.startswith("sources.l2_3") for line in lines), lines
    assert all(len(line) < 200 for line in lines), lines


def test_profile_overlays_are_found_from_the_command_line(monkeypatch):
    assert configs.workflow_profile(["snakemake", "--workflow-profile", "profiles/demo"], REPO).name == "config.yaml"
    demo = configs.workflow_profile(["--workflow-profile=demo"], REPO)
    assert configs.profile_overlays(demo) == ["config.demo.yaml"]
    assert configs.workflow_profile(["--workflow-profile", "none"], REPO) is None
    assert configs.profile_overlays(configs.workflow_profile([], REPO)) == []  # profiles/default
    monkeypatch.chdir(REPO)
    assert configs.missing_overlays(["config.demo.yaml"], [REPO / "config.demo.yaml"]) == []
    assert configs.missing_overlays(["config.demo.yaml"], ["mine.yaml"]) == ["config.demo.yaml"]
