# ---- the UCI regression benchmark (an extension of the paper): harness.uci ----
#
# One training job per (data set, method) trains the configured splits together (one network per
# split), after choosing each split's noise variance on a validation part of its training rows.

if UCI:
    register_outputs("uci", get_uci_outputs)

    localrules:
        summarize_uci,

    wildcard_constraints:
        uci_set="|".join(UCI["sets"]),
        uci_method="|".join(UCI["methods"]),

    rule prepare_uci:
        output:
            summary=f"{UCI_RESULTS}/data/{{uci_set}}.json",
        log:
            f"{UCI_LOGS}/prepare_uci/{{uci_set}}.log",
        params:
            splits=lambda wc: uci_splits(wc.uci_set),
            root=UCI["root"],
        threads: 1
        conda:
            CONDA_ENV
        script:
            "../scripts/prepare_uci.py"

    rule train_uci:
        input:
            data=rules.prepare_uci.output.summary,
        output:
            runs=f"{UCI_RESULTS}/{{uci_set}}/{{uci_method}}/runs.json",
            predictions=f"{UCI_RESULTS}/{{uci_set}}/{{uci_method}}/predictions.npz",
        log:
            f"{UCI_LOGS}/train_uci/{{uci_set}}/{{uci_method}}.log",
        benchmark:
            f"{BENCHMARKS}/{UCI['name']}/train_uci/{{uci_set}}/{{uci_method}}.tsv"
        params:
            splits=lambda wc: uci_splits(wc.uci_set),
            settings=lambda wc: UCI[wc.uci_method],
            protocol=uci_protocol(),
            root=UCI["root"],
        threads: THREADS
        conda:
            CONDA_ENV
        resources:
            gpu=0,
        script:
            "../scripts/train_uci.py"

    rule summarize_uci:
        input:
            unpack(get_uci_runs),
            published=UCI["published"],
        output:
            summary=f"{UCI_RESULTS}/summary.json",
            table_md=f"{UCI_REPORTS}/table.md",
            table_csv=report(
                f"{UCI_REPORTS}/table.csv",
                caption="../report/uci.rst",
                category="UCI regression",
            ),
            table_tex=f"{UCI_REPORTS}/table.tex",
            figure=report(
                f"{UCI_REPORTS}/rmse_ll.png",
                caption="../report/uci.rst",
                category="UCI regression",
            ),
        log:
            f"{UCI_LOGS}/summarize_uci.log",
        params:
            sets=list(UCI["sets"]),
            methods=UCI["methods"],
        threads: 1
        conda:
            CONDA_ENV
        script:
            "../scripts/summarize_uci.py"
