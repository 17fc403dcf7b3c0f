# ---- reports: tables per (dataset, arch), figures, and the claims against the paper ----
# (calibration curves, selective prediction, shift and OOD sets where the configuration asks)


rule make_table:
    input:
        summary=rules.aggregate_metrics.output.summary,
    output:
        md=f"{TABLE}/table.md",
        csv=report(
            f"{TABLE}/table.csv",
            caption="../report/table.rst",
            category="Tables",
            subcategory="{dataset} / {arch}",
        ),
        tex=f"{TABLE}/table.tex",
    log:
        f"{LOGS}/make_table/{{dataset}}/{{arch}}.log",
    params:
        config=config,
    threads: 1
    conda:
        CONDA_ENV
    script:
        "../scripts/make_table.py"


rule plot_reliability:
    input:
        unpack(get_first_seed_predictions),
    output:
        figure=report(
            f"{TABLE}/reliability.png",
            caption="../report/reliability.rst",
            category="Figures",
            subcategory="{dataset} / {arch}",
        ),
    log:
        f"{LOGS}/plot_reliability/{{dataset}}/{{arch}}.log",
    params:
        bins=config["report"]["reliability_bins"],
    threads: 1
    conda:
        CONDA_ENV
    script:
        "../scripts/plot_reliability.py"


rule plot_training:
    input:
        metrics=get_table_metrics,
    output:
        curves=report(
            f"{TABLE}/learning_curves.png",
            caption="../report/learning_curves.rst",
            category="Figures",
            subcategory="{dataset} / {arch}",
        ),
        epoch_seconds=report(
            f"{TABLE}/epoch_seconds.png",
            caption="../report/epoch_seconds.rst",
            category="Figures",
            subcategory="{dataset} / {arch}",
        ),
    log:
        f"{LOGS}/plot_training/{{dataset}}/{{arch}}.log",
    threads: 1
    conda:
        CONDA_ENV
    script:
        "../scripts/plot_training.py"


if TRAINING.get("evaluate_every_epoch"):

    localrules:
        plot_calibration_curves,

    rule plot_calibration_curves:
        input:
            metrics=get_table_metrics,
        output:
            figure=report(
                f"{TABLE}/calibration_curves.png",
                caption="../report/calibration_curves.rst",
                category="Figures",
                subcategory="{dataset} / {arch}",
            ),
            md=f"{TABLE}/epochs.md",
            csv=report(
                f"{TABLE}/epochs.csv",
                caption="../report/calibration_curves.rst",
                category="Tables",
                subcategory="{dataset} / {arch}",
            ),
        log:
            f"{LOGS}/plot_calibration_curves/{{dataset}}/{{arch}}.log",
        threads: 1
        conda:
            CONDA_ENV
        script:
            "../scripts/plot_calibration_curves.py"


if EVALUATION.get("selective"):

    localrules:
        summarize_selective,

    rule summarize_selective:
        input:
            summary=rules.aggregate_metrics.output.summary,
            metrics=get_table_metrics,
        output:
            md=f"{TABLE}/selective.md",
            csv=report(
                f"{TABLE}/selective.csv",
                caption="../report/selective.rst",
                category="Tables",
                subcategory="{dataset} / {arch}",
            ),
            figure=report(
                f"{TABLE}/selective.png",
                caption="../report/selective.rst",
                category="Figures",
                subcategory="{dataset} / {arch}",
            ),
        log:
            f"{LOGS}/summarize_selective/{{dataset}}/{{arch}}.log",
        threads: 1
        conda:
            CONDA_ENV
        script:
            "../scripts/summarize_selective.py"


if SHIFT:

    localrules:
        summarize_shift,

    rule summarize_shift:
        input:
            metrics=get_table_metrics,
        output:
            md=f"{TABLE}/shift.md",
            csv=report(
                f"{TABLE}/shift.csv",
                caption="../report/shift.rst",
                category="Tables",
                subcategory="{dataset} / {arch}",
            ),
            figure=report(
                f"{TABLE}/shift.png",
                caption="../report/shift.rst",
                category="Figures",
                subcategory="{dataset} / {arch}",
            ),
        log:
            f"{LOGS}/summarize_shift/{{dataset}}/{{arch}}.log",
        params:
            evaluation=EVALUATION,
        threads: 1
        conda:
            CONDA_ENV
        script:
            "../scripts/summarize_shift.py"


if EVALUATION.get("ood_sets"):

    localrules:
        summarize_ood,

    rule summarize_ood:
        input:
            metrics=get_table_metrics,
        output:
            md=f"{TABLE}/ood.md",
            csv=report(
                f"{TABLE}/ood.csv",
                caption="../report/ood.rst",
                category="Tables",
                subcategory="{dataset} / {arch}",
            ),
        log:
            f"{LOGS}/summarize_ood/{{dataset}}/{{arch}}.log",
        params:
            evaluation=EVALUATION,
        threads: 1
        conda:
            CONDA_ENV
        script:
            "../scripts/summarize_ood.py"


rule render_claims:
    input:
        summary=rules.aggregate_metrics.output.summary,
        registry=config["report"]["claims"],
        evidence=lambda wc: list(CLAIM_EVIDENCE.values()),
    output:
        claims=report(
            f"{REPORTS}/claims.md",
            caption="../report/claims.rst",
            category="Claims",
        ),
    log:
        f"{LOGS}/render_claims.log",
    params:
        config=config,
        evidence_names=lambda wc: list(CLAIM_EVIDENCE),
    threads: 1
    conda:
        CONDA_ENV
    script:
        "../scripts/render_claims.py"


if EXPERIMENTS:
    register_outputs("reports", get_report_outputs)
