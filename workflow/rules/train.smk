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
        source=SOURCE_FINGERPRINTS["mp"],
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


rule train_baseline:
    # AdamW and IVON. Every baseline run also writes its prediction at the mean weights beside
    # its predictions (IVON@mean, exposed as the artifact `ivon_mean`; for AdamW, a point
    # estimate, it is the prediction itself).
    input:
        data=rules.prepare_data.output.summary,
    output:
        predictions=f"{RUN}/predictions.npz",
        predictions_mean=f"{RUN}/predictions_mean.npz",
        model=f"{RUN}/model.pt",
    log:
        f"{LOGS}/train_{{method}}/{{dataset}}/{{arch}}/seed{{seed}}.log",
    benchmark:
        f"{BENCHMARKS}/train_{{method}}/{{dataset}}/{{arch}}/seed{{seed}}.tsv"
    wildcard_constraints:
        method="adamw|ivon",
    params:
        method=lambda wc: wc.method,
        source=lambda wc: SOURCE_FINGERPRINTS[wc.method],
        experiment=lambda wc: EXPERIMENTS[wc.dataset],
        data=config["data"],
        data_settings=lambda wc: get_data_settings(wc.method)(wc),
        run=lambda wc: get_run_config(wc.method)(wc),
        identity=lambda wc: get_identity(wc.method)(wc),
        state=f"{RUN}/state",
    threads: THREADS
    conda:
        CONDA_ENV
    resources:
        gpu=GPUS,
    script:
        "../scripts/train_baseline.py"
