"""The grid: schedules, seeds, run settings per job, figure selections, source kinds."""

from __future__ import annotations

import pytest

from robust_transfer import checks, grid, plan, recipes, sizes


@pytest.mark.parametrize("size", [100, 200, 400, 800, 1600, "100", "1600"])
def test_schedule_small_sizes(config, size):
    """n <= 1600: 100 epochs, evaluated at 1, 21, 41, 61, 81, 100."""
    assert recipes.schedule(config["finetune"], size) == {"epochs": 100, "eval_epochs": [1, 21, 41, 61, 81, 100]}


@pytest.mark.parametrize("size", [3200, "3200", 6400, 25600, "full"])
def test_schedule_large_sizes(config, size):
    """n >= 3200 and the full set: 150 epochs, evaluated at 1, 11, ..., 141, 150."""
    expected = list(range(1, 142, 10)) + [150]
    assert expected[:3] == [1, 11, 21] and expected[-2:] == [141, 150]
    assert recipes.schedule(config["finetune"], size) == {"epochs": 150, "eval_epochs": expected}


def test_schedule_fig3_epochs_are_logged(config):
    """Fig 3 reads epochs 11, 21, 41, 81, 150 of n=3200 runs: all must be logged."""
    evals = recipes.schedule(config["finetune"], 3200)["eval_epochs"]
    assert {11, 21, 41, 81, 150} <= set(evals)


@pytest.mark.parametrize("size", [100, 1600, 3200, 6400, "6400"])
def test_seeds_ten(config, size):
    """10 seeds 20000000 + 100000 i for n <= 6400."""
    assert grid.seeds(config, size) == [20000000 + 100000 * i for i in range(10)]


@pytest.mark.parametrize("size", [12800, "12800", 25600, "25600"])
def test_seeds_five(config, size):
    assert grid.seeds(config, size) == [20000000 + 100000 * i for i in range(5)]


def test_seeds_full(config):
    assert grid.seeds(config, "full") == [20000000]


def test_run_settings_resolve_the_schedule_and_drop_placement(config):
    """A run's settings: the finetune section with epochs and evaluation epochs of its size
    instead of the schedule table, without threads (where it runs is not what it computes)."""
    small, large = (
        recipes.run_settings(config, "cifar10", "l2_3", 100),
        recipes.run_settings(config, "cifar10", "l2_3", "full"),
    )
    assert small["epochs"] == 100 and small["eval_epochs"] == [1, 21, 41, 61, 81, 100]
    assert large["epochs"] == 150 and large["eval_epochs"][-1] == 150
    assert "schedule" not in small and "threads" not in small
    assert small["lr"] == 0.1 and small["head_std"] == 1.0 and small["augment"]["pad"] == 4


def test_pretrain_settings_override_the_pretrain_section(config):
    config["sources"]["mine"] = {"train": {"dataset": "cifar10", "seed": 3, "lr": 0.05, "attack": None}}
    cfg = recipes.pretrain_settings(config, "mine")
    assert cfg["lr"] == 0.05 and cfg["epochs"] == config["pretrain"]["epochs"] and cfg["seed"] == 3
    assert "threads" not in cfg


def test_how_a_job_runs_is_read_from_the_config_and_is_no_setting(config):
    """allow_cpu and channels_last (placement) reach the scripts through recipes.placement, from
    a run's recipe section or a source's pretrain section with its train entry on top, and are
    never part of the settings (the params): changing them reruns nothing."""
    config["sources"]["mine"] = {"train": {"dataset": "cifar10", "seed": 3, "channels_last": True}}
    config["salman"] |= {"allow_cpu": True, "channels_last": False}
    assert recipes.placement(config) == {"allow_cpu": False, "channels_last": "auto"}
    assert recipes.placement(config, recipe="salman") == {"allow_cpu": True, "channels_last": False}
    assert recipes.placement(config, "mine") == {"allow_cpu": False, "channels_last": True}
    settings = [recipes.run_settings(config, "cifar10", "l2_3", 100), recipes.pretrain_settings(config, "mine")]
    settings.append(recipes.run_settings(config, "salman_cifar10", "l2_3", "full", "salman", 0.01))
    for cfg in settings:
        assert not {"threads", "allow_cpu", "channels_last"} & set(cfg)


def test_source_kinds(config):
    assert grid.sources_of_kind(config, "url")[:4] == ["natural", "l2_3", "linf_4", "linf_8"]
    assert grid.sources_of_kind(config, "random_init") == ["scratch"]
    assert grid.source_kind({"url": None, "train": {"dataset": "d", "seed": 0}}) == "train"
    with pytest.raises(ValueError, match="exactly one of"):
        grid.source_kind({"url": "x", "train": {"dataset": "d", "seed": 0}})
    with pytest.raises(ValueError, match="exactly one of"):
        grid.source_kind({"note": "nothing"})


def test_run_path_is_spelled_once():
    run = grid.Run("cifar10", "l2_3", 3, "full", 20000000)
    assert run.path == "results/runs/cifar10/l2_3/k3/nfull/s20000000"
    assert run.path == grid.RUN.format(dataset="cifar10", source="l2_3", tuning="k3", size="full", seed=20000000)


def test_delta_selection_and_defaults(config):
    sel = grid.figure_selection(config, "fig5c")
    assert sel["sources"] == ["linf_4", "linf_8"] and sel["k"] == [1]
    assert sel["datasets"] == config["grid"]["datasets"] and sel["sizes"][-1] == "full"
    table2 = grid.figure_selection(config, "table2")
    assert table2["sources"] == ["l2_3", "natural"]


def test_figure_statistics_hold_no_look(config):
    """Aggregation depends on the selection, metric and delta; a y range or title is look."""
    stats = grid.figure_statistics(config, "fig2b")
    assert stats["metric"] == "final" and stats["delta"]["a"] == "l2_3"
    assert "ylim" not in stats and "title" not in stats and "legend" not in stats


def test_paper_ylim_switch(config):
    assert grid.figure_spec(config, "fig5c")["ylim"] == [-8, 14]
    config["paper_ylim"] = False
    assert "ylim" not in grid.figure_spec(config, "fig5c")


def test_demo_overlay_declares_each_figure_once(paper_config, demo_config):
    """The demo is an overlay: same figures as the paper (none added), each with the paper's
    kind and statistics unless the overlay changes a key."""
    assert list(demo_config["figures"]) == list(paper_config["figures"])
    for fig, spec in demo_config["figures"].items():
        assert spec["kind"] == paper_config["figures"][fig]["kind"]
    assert grid.source_kind(demo_config["sources"]["l2_3"]) == "train"
    assert all(r.dataset in ("digits", "lfw", "lfw_8", "lfw_lowpass") for r in grid.all_runs(demo_config))


def test_from_scratch_runs_follow_the_authors_recipe(config):
    """Table 7's from-scratch column as the authors ran it: a fresh init per run seed, PyTorch's
    default head, the target's own statistics, no augmentation on the digit sets, the robustness
    library's subsets; transfer runs keep ImageNet statistics, the N(0, 1) head and make_mask."""
    from robust_transfer.datasets import LOADERS

    scratch = recipes.run_settings(config, "mnist", "scratch", 100)
    assert scratch["init"] == "run" and scratch["head_std"] is None
    assert (scratch["mean"], scratch["std"]) == ([0.1307] * 3, [0.3081] * 3)
    assert scratch["augment"] == recipes.NO_AUGMENT
    cifar = recipes.run_settings(config, "cifar10", "scratch", 100)
    assert cifar["augment"] == config["finetune"]["augment"] and cifar["mean"] == list(LOADERS["cifar10"].mean)
    assert recipes.subset_rule(config, "scratch") == "make_loaders"
    transfer = recipes.run_settings(config, "mnist", "l2_3", 100)
    assert transfer["init"] is None and transfer["head_std"] == 1.0 and transfer["mean"] is None
    assert transfer["augment"] == config["finetune"]["augment"] and recipes.subset_rule(config, "l2_3") == "make_mask"
    # each switch back to the transfer recipe
    config["sources"]["scratch"]["random_init"] = {
        "seed": 0,
        "head": "normal",
        "normalize": "imagenet",
        "subset": "make_mask",
    }
    old = recipes.run_settings(config, "mnist", "scratch", 100)
    assert old["init"] is None and old["head_std"] == 1.0 and old["mean"] is None
    assert old["augment"] == config["finetune"]["augment"] and recipes.subset_rule(config, "scratch") == "make_mask"


# --- bad config: one message per problem, before any job ------------------------------------


def _problems(config, edit):
    edit(config)
    return checks.problems(config)


BAD = [
    (
        "n above the training set",
        lambda c: c["figures"]["fig5c"].update(sizes=[60001]),
        "n=60001 is more than the 60000 training images of mnist",
    ),
    (
        "n above a split training set",
        lambda c: c["figures"]["table2"].update(sizes=[4000]),
        "n=4000 is more than the 3030 training images of caltech101_32",
    ),
    (
        "n below the classes",
        lambda c: c["figures"]["fig5c"].update(sizes=[50]),
        "n=50 is fewer than the 100 classes of cifar100",
    ),
    (
        "k not in the architecture",
        lambda c: c["figures"]["fig4a"].update(k=[0, 17]),
        "fig4a: k=17 is not in ResNet-50, which has 16 blocks",
    ),
    (
        "no runs",
        lambda c: c["figures"]["fig2a"].update(k_by_source={"l2_3": [], "natural": []}),
        "figures.fig2a selects no runs",
    ),
    (
        "unknown dataset",
        lambda c: c["figures"]["fig5a"].update(datasets=["cifar11"]),
        "figures.fig5a: dataset 'cifar11' is not in datasets",
    ),
    (
        "unknown source",
        lambda c: c["figures"]["fig5c"]["delta"].update(a="linf_16"),
        "figures.fig5c: source 'linf_16' is not in sources",
    ),
    (
        "unknown grid source",
        lambda c: c["grid"].update(sources=["natural", "l2"]),
        "grid.sources: 'l2' is not in sources",
    ),
    (
        "unknown k_by_source",
        lambda c: c["figures"]["table7"].update(k_by_source={"scrach": [16]}),
        "k_by_source: 'scrach' is not in sources",
    ),
    (
        "unknown loader",
        lambda c: c["datasets"].update(stl10={"loader": "stl10"}),
        "datasets.stl10.loader 'stl10' is not one of",
    ),
    (
        "missing split",
        lambda c: c["datasets"].update(cal={"loader": "caltech101"}),
        "datasets.cal: caltech101 has no official train/test split",
    ),
    (
        "malformed url",
        lambda c: c["sources"]["l2_3"].update(url="htps://www.dropbox.com/x.pt"),
        "sources.l2_3.url: 'htps://www.dropbox.com/x.pt' is not an http(s)://",
    ),
    ("url without host", lambda c: c["sources"]["l2_3"].update(url="https:///x.pt"), "sources.l2_3.url"),
    (
        "two recipes",
        lambda c: c["sources"]["l2_3"].update(random_init={"seed": 0}),
        "sources.l2_3: a source needs exactly one of",
    ),
    ("epoch not logged", lambda c: c["figures"]["fig3a"].update(epochs=[11, 20]), "fig3a: epochs [20] are not logged"),
    (
        "lowpass with random crop",
        lambda c: c["datasets"]["caltech101_lowpass"].update(train_crop="random"),
        "needs train_crop: center",
    ),
]


@pytest.mark.parametrize("name, edit, message", BAD, ids=[b[0] for b in BAD])
def test_each_bad_config_gets_its_message(config, name, edit, message):
    problems = _problems(config, edit)
    assert any(message in p for p in problems), problems


def test_the_paper_and_the_demo_configs_have_no_problems(paper_config, demo_config):
    assert checks.problems(paper_config) == [] and checks.problems(demo_config) == []


def test_several_problems_are_reported_together(config):
    config["figures"]["fig4a"]["k"] = [17]
    config["sources"]["l2_3"]["url"] = "ftp://x"
    assert len(checks.problems(config)) == 2


def test_blocks_is_resnet50s(config):
    from robust_transfer.models import blocks, resnet50

    assert len(blocks(resnet50(width_per_group=8))) == checks.BLOCKS


def test_time_limits_cover_the_authors_run_times_with_room(paper_config):
    """A cluster job's time limit (minutes) exceeds twice the authors' mean run time (343 s at
    n=100, 3,162 s at n=25,600), grows with n and the test set, and with the attempt."""

    def limit(dataset, n, attempt=1):
        return plan.time_limit(paper_config, grid.Run(dataset, "l2_3", 3, n, 20000000), attempt)

    minutes = [limit("cifar10", n) for n in ["100", "1600", "3200", "25600", "full"]]
    assert minutes == sorted(minutes) and minutes[0] * 60 >= 2 * 343 and minutes[3] * 60 >= 2 * 3162
    assert limit("svhn", "full") > limit("cifar10", "full")
    assert limit("cifar10", "100", attempt=3) == 3 * minutes[0]


def test_time_limits_of_the_demo(demo_config):
    """Demo runs are tiny: the fixed cost sets their limit; split sizes are the prepared ones."""
    assert sizes.split_size(demo_config, "digits", "train") == sizes.train_size(demo_config, "digits") == 627
    assert sizes.split_size(demo_config, "lfw", "test") == 50
    runs = [grid.Run(d, "natural", 3, n, 20000000) for d in ["digits", "lfw"] for n in ["20", "80"]]
    assert {plan.time_limit(demo_config, r) for r in runs} == {plan.MIN_MINUTES}


def test_adversarial_pretraining_asks_for_more_time(config):
    cfg = config
    cfg["sources"]["nat"] = {"train": {"dataset": "cifar10", "seed": 1, "attack": None}}
    cfg["sources"]["adv"] = {"train": {"dataset": "cifar10", "seed": 1, "attack": {"norm": "l2", "eps": 3, "steps": 7}}}
    assert plan.pretrain_limit(cfg, "adv") > 7 * plan.pretrain_limit(cfg, "nat") > 0
