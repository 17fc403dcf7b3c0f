# ---- evaluation: score every prediction artifact, then aggregate over seeds ----


rule evaluate_run:
    input:
        predictions=get_predictions,
        benchmark=get_benchmark,
    output:
        metrics=f"{RUN}/metrics.json",
    log:
        f"{LOGS}/evaluate_run/{{dataset}}/{{arch}}/{{method}}/seed{{seed}}.log",
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
