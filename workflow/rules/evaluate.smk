# ---- evaluation: predict the extra sets, score every prediction artifact, aggregate over seeds ----


if SETS:

    rule predict_sets:
        input:
            model=get_trained_model,
            data=rules.prepare_data.output.summary,
        output:
            sets=f"{RUN}/sets.npz",
        log:
            f"{LOGS}/predict_sets/{{dataset}}/{{arch}}/{{method}}/seed{{seed}}.log",
        benchmark:
            f"{BENCHMARKS}/predict_sets/{{dataset}}/{{arch}}/{{method}}/seed{{seed}}.tsv"
        params:
            experiment=lambda wc: EXPERIMENTS[wc.dataset],
            data=config["data"],
            evaluation=EVALUATION,
            run=get_sets_params("run"),
            data_settings=get_sets_params("data_settings"),
        threads: THREADS
        conda:
            CONDA_ENV
        resources:
            gpu=GPUS,
        script:
            "../scripts/predict_sets.py"


rule evaluate_run:
    input:
        unpack(get_sets_input),
        predictions=get_predictions,
        benchmark=get_benchmark,
    output:
        metrics=f"{RUN}/metrics.json",
    log:
        f"{LOGS}/evaluate_run/{{dataset}}/{{arch}}/{{method}}/seed{{seed}}.log",
    params:
        ood_name=get_ood_name,
    threads: 1
    conda:
        CONDA_ENV
    script:
        "../scripts/evaluate_run.py"


rule aggregate_metrics:
    input:
        metrics=get_all_metrics,
    output:
        summary=f"{RESULTS}/summary.json",
        csv=report(
            f"{REPORTS}/summary.csv",
            caption="../report/summary.rst",
            category="Tables",
        ),
    log:
        f"{LOGS}/aggregate_metrics.log",
    threads: 1
    conda:
        CONDA_ENV
    script:
        "../scripts/aggregate_metrics.py"


register_outputs("metrics", get_all_metrics)
