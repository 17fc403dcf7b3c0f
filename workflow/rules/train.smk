# ---- training: one job per (dataset, arch, method, seed); predicts test and OOD inputs ----


rule train_mp:
    input:
        data=rules.prepare_data.output.summary,
    output:
        predictions=f"{RESULTS}/{{dataset}}/{{arch}}/mp/seed{{seed}}/predictions.npz",
        model=f"{RESULTS}/{{dataset}}/{{arch}}/mp/seed{{seed}}/model.pt",
    log:
        f"{LOGS}/train_mp/{{dataset}}/{{arch}}/seed{{seed}}.log",
    benchmark:
        f"{BENCHMARKS}/train_mp/{{dataset}}/{{arch}}/seed{{seed}}.tsv"
    params:
        experiment=lambda wc: EXPERIMENTS[wc.dataset],
        data=config["data"],
        data_settings=get_data_settings("mp"),
        run=get_run_config("mp"),
        identity=get_identity("mp"),
        state=f"{RESULTS}/{{dataset}}/{{arch}}/mp/seed{{seed}}/state",
    threads: THREADS
    conda:
        CONDA_ENV
    resources:
        gpu=GPUS,
    script:
        "../scripts/train_mp.py"


rule train_adamw:
    input:
        data=rules.prepare_data.output.summary,
    output:
        predictions=f"{RESULTS}/{{dataset}}/{{arch}}/adamw/seed{{seed}}/predictions.npz",
        model=f"{RESULTS}/{{dataset}}/{{arch}}/adamw/seed{{seed}}/model.pt",
    log:
        f"{LOGS}/train_adamw/{{dataset}}/{{arch}}/seed{{seed}}.log",
    benchmark:
        f"{BENCHMARKS}/train_adamw/{{dataset}}/{{arch}}/seed{{seed}}.tsv"
    params:
        method="adamw",
        experiment=lambda wc: EXPERIMENTS[wc.dataset],
        data=config["data"],
        data_settings=get_data_settings("adamw"),
        run=get_run_config("adamw"),
        identity=get_identity("adamw"),
        state=f"{RESULTS}/{{dataset}}/{{arch}}/adamw/seed{{seed}}/state",
    threads: THREADS
    conda:
        CONDA_ENV
    resources:
        gpu=GPUS,
    script:
        "../scripts/train_baseline.py"


rule train_ivon:
    input:
        data=rules.prepare_data.output.summary,
    output:
        predictions=f"{RESULTS}/{{dataset}}/{{arch}}/ivon/seed{{seed}}/predictions.npz",
        predictions_mean=f"{RESULTS}/{{dataset}}/{{arch}}/ivon_mean/seed{{seed}}/predictions.npz",
        model=f"{RESULTS}/{{dataset}}/{{arch}}/ivon/seed{{seed}}/model.pt",
    log:
        f"{LOGS}/train_ivon/{{dataset}}/{{arch}}/seed{{seed}}.log",
    benchmark:
        f"{BENCHMARKS}/train_ivon/{{dataset}}/{{arch}}/seed{{seed}}.tsv"
    params:
        method="ivon",
        experiment=lambda wc: EXPERIMENTS[wc.dataset],
        data=config["data"],
        data_settings=get_data_settings("ivon"),
        run=get_run_config("ivon"),
        identity=get_identity("ivon"),
        state=f"{RESULTS}/{{dataset}}/{{arch}}/ivon/seed{{seed}}/state",
    threads: THREADS
    conda:
        CONDA_ENV
    resources:
        gpu=GPUS,
    script:
        "../scripts/train_baseline.py"
