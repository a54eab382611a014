rule finetune:
    input:
        train="results/data/{dataset}/train.npz",
        test="results/data/{dataset}/test.npz",
        subset="results/subsets/{dataset}/n{size}/s{seed}.npy",
        source="results/sources/{source}.pt",
    output:
        log="results/runs/{dataset}/{source}/k{k}/n{size}/s{seed}.csv",
        meta="results/runs/{dataset}/{source}/k{k}/n{size}/s{seed}.json",
    log:
        "logs/finetune/{dataset}/{source}/k{k}/n{size}/s{seed}.log",
    conda:
        "../envs/workflow.yaml"
    threads: config["finetune"]["threads"]
    resources:
        gpu=1,
    script:
        "../scripts/finetune.py"
