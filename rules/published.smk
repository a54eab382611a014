rule fetch_published:
    output:
        logs="resources/published/logs.csv",
    log:
        "logs/fetch_published.log",
    localrule: True
    conda:
        "../envs/workflow.yaml"
    script:
        "../scripts/fetch_published.py"


rule published_runs:
    input:
        logs=ancient("resources/published/logs.csv"),
        code=[STATS_CODE, PUBLISHED_CODE],
    output:
        runs="results/published/runs.csv",
    params:
        margin=config["aggregate"]["collapse_margin"],
    log:
        "logs/published_runs.log",
    localrule: True
    conda:
        "../envs/workflow.yaml"
    script:
        "../scripts/published_runs.py"


rule published_aggregate:
    input:
        published="results/published/runs.csv",
        code=STATS_CODE,
    output:
        runs="results/published/figures/{fig}/runs.csv",
        summary="results/published/figures/{fig}/summary.csv",
    log:
        "logs/published_aggregate/{fig}.log",
    localrule: True
    conda:
        "../envs/workflow.yaml"
    params:
        spec=figure_spec,
        settings=config["aggregate"],
    script:
        "../scripts/aggregate.py"


rule published_figure:
    input:
        summary="results/published/figures/{fig}/summary.csv",
        code=PLOTS_CODE,
    output:
        pdf="figures/published/{fig}.pdf",
    log:
        "logs/published_figure/{fig}.log",
    wildcard_constraints:
        fig=_choice(FIGURES),
    localrule: True
    conda:
        "../envs/workflow.yaml"
    params:
        spec=figure_spec,
    script:
        "../scripts/figure.py"


rule published_table:
    input:
        summary="results/published/figures/{fig}/summary.csv",
        code=PLOTS_CODE,
    output:
        csv="figures/published/{fig}.csv",
        md="figures/published/{fig}.md",
    log:
        "logs/published_table/{fig}.log",
    wildcard_constraints:
        fig=_choice(TABLES),
    localrule: True
    conda:
        "../envs/workflow.yaml"
    params:
        spec=figure_spec,
    script:
        "../scripts/table.py"


rule compare:
    input:
        ours="results/figures/{fig}/summary.csv",
        theirs="results/published/figures/{fig}/summary.csv",
        code=PLOTS_CODE,
    output:
        table="figures/compare/{fig}.csv",
        pdf="figures/compare/{fig}.pdf",
    log:
        "logs/compare/{fig}.log",
    wildcard_constraints:
        fig=_choice(FIGURES),
    localrule: True
    conda:
        "../envs/workflow.yaml"
    params:
        spec=figure_spec,
    script:
        "../scripts/compare.py"
