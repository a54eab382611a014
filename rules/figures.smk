rule figure:
    input:
        summary="results/figures/{fig}/summary.csv",
        code=plots_code,
    output:
        pdf="figures/{fig}.pdf",
        # the same drawing for browsers: the report shows it (a PDF shows as an empty pane there)
        png=report(
            "figures/{fig}.png",
            caption="../report/figure.rst",
            category="Figures",
            labels=report_labels,
        ),
    log:
        "logs/figure/{fig}.log",
    wildcard_constraints:
        fig=_choice(FIGURES),
    # before waiting runs: a figure whose runs are done is drawn at once (aggregate and table too)
    priority: 1
    localrule: True
    conda:
        "../envs/workflow.yaml"
    params:
        spec=figure_spec,
        caption=figure_caption,
    script:
        "../scripts/figure.py"


# A table: the figure rule's inputs, settings and script (which writes a table when its outputs
# are csv and md).
use rule figure as table with:
    output:
        csv=report(
            "figures/{fig}.csv",
            caption="../report/table.rst",
            category="Tables",
            labels=report_labels,
        ),
        md="figures/{fig}.md",
    log:
        "logs/table/{fig}.log",
    wildcard_constraints:
        fig=_choice(TABLES),
