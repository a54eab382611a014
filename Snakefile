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


# Rules made with `use rule ... with:` run where their originals run, here and not on a cluster;
# Snakemake does not carry `localrule` over to them.
localrules:
    table,
    published_aggregate,
    published_figure,
    published_table,
    compare,


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


# The targets of dvc.yaml's stages (docs/dvc.md): DVC versions what each one builds.


rule data:
    input:
        data_targets(),


rule runs:
    input:
        "results/runs.csv",


rule figures:
    input:
        figure_files("figures/", IN_ALL),
        figure_metrics_files(IN_ALL),
