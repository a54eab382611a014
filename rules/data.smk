rule download:
    output:
        ready="resources/data/{loader}/READY",
    log:
        "logs/download/{loader}.log",
    localrule: True
    conda:
        "../envs/workflow.yaml"
    params:
        mirror=lambda w: (
            f"{config['data']['mirror']}/{w.loader}"
            if config["data"]["mirror"]
            else None
        ),
        offline=config["data"]["offline"],
    script:
        "../scripts/download.py"


rule prepare:
    input:
        ready=dataset_ready,
    output:
        train="results/data/{dataset}/train.npz",
        test="results/data/{dataset}/test.npz",
    log:
        "logs/prepare/{dataset}.log",
    conda:
        "../envs/workflow.yaml"
    params:
        spec=dataset_spec,
    script:
        "../scripts/prepare.py"


rule subsample:
    input:
        train="results/data/{dataset}/train.npz",
    output:
        idx="results/subsets/{dataset}/{method}/n{size}/s{seed}.npy",
    log:
        "logs/subsample/{dataset}/{method}/n{size}/s{seed}.log",
    localrule: True
    conda:
        "../envs/workflow.yaml"
    script:
        "../scripts/subsample.py"
