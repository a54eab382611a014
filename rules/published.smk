# The authors' own per-run logs: converted to our run table, then through the same aggregate,
# figure and table rules as our runs (so statistics and look are defined once).


rule fetch_published:
    output:
        consolidated="resources/published/consolidated_results.csv",
    log:
        "logs/fetch_published.log",
    localrule: True
    conda:
        "../envs/workflow.yaml"
    params:
        url=config.get("published", {}).get("url"),
        sha256=config.get("published", {}).get("sha256"),
        mirror=config.get("published", {}).get("mirror"),
        lock=config["downloads_lock"],
    script:
        "../scripts/fetch_published.py"


rule published_runs:
    input:
        consolidated=ancient("resources/published/consolidated_results.csv"),
        code=PUBLISHED_CODE,
    output:
        runs="results/published/runs.csv",
    log:
        "logs/published_runs.log",
    localrule: True
    conda:
        "../envs/workflow.yaml"
    script:
        "../scripts/published_runs.py"


use rule aggregate as published_aggregate with:
    input:
        runs=published_runs,
        code=stats_code,
    output:
        runs="results/published/figures/{fig}/runs.csv",
        summary="results/published/figures/{fig}/summary.csv",
    log:
        "logs/published_aggregate/{fig}.log",


use rule figure as published_figure with:
    input:
        summary="results/published/figures/{fig}/summary.csv",
        code=plots_code,
    output:
        pdf="figures/published/{fig}.pdf",
        png="figures/published/{fig}.png",
    log:
        "logs/published_figure/{fig}.log",


# the published figure's inputs, with a table's outputs (scripts/figure.py writes a table then)
use rule published_figure as published_table with:
    output:
        csv="figures/published/{fig}.csv",
        md="figures/published/{fig}.md",
    log:
        "logs/published_table/{fig}.log",
    wildcard_constraints:
        fig=_choice(TABLES),


use rule figure as compare with:
    input:
        summary="results/figures/{fig}/summary.csv",
        theirs="results/published/figures/{fig}/summary.csv",
        code=plots_code,
    output:
        table="figures/compare/{fig}.csv",
        pdf="figures/compare/{fig}.pdf",
        png="figures/compare/{fig}.png",
    log:
        "logs/compare/{fig}.log",


# A study's published tables (reference/<study>, in the repository): a run table of their own.
rule study_published_runs:
    input:
        transfer=study_published("transfer"),
        best_params=study_published("best_params"),
        facts=study_published("datasets"),
        code=PUBLISHED_CODE,
    output:
        runs="results/published/{study}/runs.csv",
    log:
        "logs/published_runs/{study}.log",
    wildcard_constraints:
        study=_choice(STUDIES),
    localrule: True
    conda:
        "../envs/workflow.yaml"
    params:
        datasets=lambda w: {
            d: config["datasets"][d] for d in config["studies"][w.study]["datasets"]
        },
    script:
        "../scripts/published_runs.py"
