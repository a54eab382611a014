rule aggregate:
    input:
        runs=figure_runs,
        code=stats_code,
    output:
        runs="results/figures/{fig}/runs.csv",
        summary="results/figures/{fig}/summary.csv",
    log:
        "logs/aggregate/{fig}.log",
    priority: 1
    localrule: True
    conda:
        "../envs/workflow.yaml"
    params:
        statistics=figure_statistics,
        settings=config["aggregate"],
    script:
        "../scripts/aggregate.py"


rule collect:
    input:
        runs=metrics_files(grid.all_runs(config)),
    output:
        runs=report("results/runs.csv", caption="../report/runs.rst", category="Runs"),
    log:
        "logs/collect.log",
    localrule: True
    conda:
        "../envs/workflow.yaml"
    params:
        margin=config["aggregate"]["collapse_margin"],
    script:
        "../scripts/collect.py"


rule figure_metrics:
    input:
        summary="results/figures/{fig}/summary.csv",
        code=METRICS_CODE,
    output:
        metrics="results/metrics/{fig}.json",
        plot="results/plots/{fig}.csv",
    log:
        "logs/figure_metrics/{fig}.log",
    priority: 1
    localrule: True
    conda:
        "../envs/workflow.yaml"
    script:
        "../scripts/figure_metrics.py"
