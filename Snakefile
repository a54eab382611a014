# Adversarially-trained deep nets transfer better (Utrera et al., ICLR 2021), figure by figure.
# Thin on purpose: the stages live in rules/, the science in the robust_transfer package.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/sources.smk"
include: "rules/finetune.smk"
include: "rules/aggregate.smk"
include: "rules/figures.smk"
include: "rules/published.smk"
include: "rules/claims.smk"


# Rules made with `use rule ... with:` run where their originals run, here and not on a cluster;
# Snakemake does not carry `localrule` over to them.
localrules:
    table,
    published_aggregate,
    published_figure,
    published_table,
    compare,
    study_claims,
    published_claims,
    published_study_claims,


onstart:
    before_work()


onsuccess:
    after_work()


onerror:
    after_work()


rule all:
    default_target: True
    input:
        all_targets(),


rule published_figures:
    input:
        figure_files("figures/published/", IN_ALL),


# Salman et al. (NeurIPS 2020), the second study: `snakemake salman2020` (every figure and table
# from our runs), `snakemake salman2020_published` (from their published tables, no GPU).


rule salman2020:
    input:
        figure_files("figures/", grid.in_all(config, "salman2020")),


rule salman2020_published:
    input:
        figure_files("figures/published/", grid.in_all(config, "salman2020")),


# The targets of dvc.yaml's stages (docs/dvc.md): DVC versions what each one builds.


rule data:
    input:
        data_targets(),


rule runs:
    input:
        "results/runs.csv",
        metrics_files(grid.built_runs(config)),


rule figures:
    input:
        figure_files("figures/", IN_ALL + built_figures()),
        figure_metrics_files(IN_ALL),
