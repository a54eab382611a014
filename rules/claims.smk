# The papers' headline claims (config: claims, and studies.<study>.claims), each checked on the
# summary of its figure: from our runs and from the published numbers (robust_transfer.claims).


rule claims:
    input:
        ours=claim_summaries("results/figures/"),
        published=claim_summaries("results/published/figures/"),
        code=CLAIMS_CODE,
    output:
        csv="figures/claims.csv",
        md="figures/claims.md",
    log:
        "logs/claims/utrera2021.log",
    localrule: True
    conda:
        "../envs/workflow.yaml"
    params:
        figures=claim_figures,
        claims=claim_list,
    script:
        "../scripts/claims.py"


use rule claims as study_claims with:
    output:
        csv="figures/{study}/claims.csv",
        md="figures/{study}/claims.md",
    log:
        "logs/claims/{study}.log",
    wildcard_constraints:
        study=_choice(STUDIES),


# From the published numbers alone (no run of ours, no GPU).
use rule claims as published_claims with:
    input:
        published=claim_summaries("results/published/figures/"),
        code=CLAIMS_CODE,
    output:
        csv="figures/published/claims.csv",
        md="figures/published/claims.md",
    log:
        "logs/published_claims/utrera2021.log",


use rule published_claims as published_study_claims with:
    output:
        csv="figures/published/{study}/claims.csv",
        md="figures/published/{study}/claims.md",
    log:
        "logs/published_claims/{study}.log",
    wildcard_constraints:
        study=_choice(STUDIES),
