rule finetune:
    input:
        train="results/data/{dataset}/train.npz",
        test="results/data/{dataset}/test.npz",
        subset=run_subset,
        source="results/sources/{source}.pt",
    output:
        metrics=f"{grid.RUN}.csv",
        meta=f"{grid.RUN}.json",
    log:
        f"logs/finetune/{grid.RUN.removeprefix('results/runs/')}.log",
    group:
        finetune_pack
    conda:
        "../envs/workflow.yaml"
    threads: run_threads
    resources:
        gpu=1,
        runtime=finetune_runtime,
    params:
        settings=run_settings,
        state=lambda w: grid.state_path(grid.RUN.format(**w)),
    script:
        "../scripts/finetune.py"
