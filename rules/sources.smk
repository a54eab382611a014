rule fetch_checkpoint:
    output:
        raw="resources/checkpoints/{source}.download",
    log:
        "logs/fetch_checkpoint/{source}.log",
    wildcard_constraints:
        source=_choice(FETCHED),
    localrule: True
    conda:
        "../envs/workflow.yaml"
    params:
        url=source_spec("url"),
        sha256=source_spec("sha256"),
        lock=config["downloads_lock"],
    script:
        "../scripts/fetch_checkpoint.py"


rule source:
    input:
        raw=ancient("resources/checkpoints/{source}.download"),
    output:
        weights="results/sources/{source}.pt",
    log:
        "logs/source/{source}.log",
    wildcard_constraints:
        source=_choice(FETCHED),
    conda:
        "../envs/workflow.yaml"
    params:
        url=source_spec("url"),
        sha256=source_spec("sha256"),
    script:
        "../scripts/source.py"


rule pretrain_source:
    input:
        train=pretrain_split("train"),
        test=pretrain_split("test"),
    output:
        weights="results/sources/{source}.pt",
    log:
        "logs/pretrain_source/{source}.log",
    wildcard_constraints:
        source=_choice(TRAINED),
    conda:
        "../envs/workflow.yaml"
    threads: config["pretrain"]["threads"]
    resources:
        gpu=1,
        runtime=pretrain_runtime,
    params:
        settings=pretrain_settings,
        state=lambda w: grid.state_path(f"results/sources/{w.source}"),
    script:
        "../scripts/pretrain_source.py"


rule random_source:
    output:
        weights="results/sources/{source}.pt",
    log:
        "logs/random_source/{source}.log",
    wildcard_constraints:
        source=_choice(RANDOM),
    localrule: True
    conda:
        "../envs/workflow.yaml"
    params:
        spec=source_spec("random_init"),
    script:
        "../scripts/random_source.py"
