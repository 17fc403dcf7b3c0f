# AMP-BNN benchmark: message passing against AdamW and IVON on the same networks.
#
#   snakemake --cores 2 all                                  default configuration (CPU)
#   snakemake --cores 8 all --configfile configs/paper.yaml  the paper's protocol (GPU)
#   snakemake --cores 2 all --configfile configs/uci.yaml    UCI regression, nine sets
#   snakemake --report reports/report.html                   HTML report of the last run
#
# Rules live in workflow/rules/; the configuration is validated against
# workflow/schemas/config.schema.yaml before anything runs.

from snakemake.utils import min_version

min_version("9.0")


# configs/default.yaml unless --configfile names another: Snakemake would otherwise merge the
# two, and every experiment of the default would leak into the other configuration.
if not workflow.overwrite_configfiles:

    configfile: "configs/default.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/coverage.smk"
include: "workflow/rules/bench.smk"
include: "workflow/rules/uci.smk"


# Cheap bookkeeping and plotting jobs run on the submitting machine under a cluster executor.
localrules:
    all,
    aggregate_metrics,
    make_table,
    plot_reliability,
    plot_training,
    render_claims,


# ---- everything the configuration asks for (each rules file registers its section) ----
rule all:
    input:
        get_final_outputs,
    default_target: True
