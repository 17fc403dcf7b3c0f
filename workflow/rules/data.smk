# ---- data: check every data set is available and summarise it as each method sees it ----


rule prepare_data:
    output:
        summary=f"{RESULTS}/data/{{dataset}}.json",
    log:
        f"{LOGS}/prepare_data/{{dataset}}.log",
    params:
        experiment=lambda wc: EXPERIMENTS[wc.dataset],
        data=config["data"],
        methods=lambda wc: {
            method: get_data_settings(method)(wc)
            for method in EXPERIMENTS[wc.dataset]["methods"]
        },
    threads: 1
    conda:
        CONDA_ENV
    script:
        "../scripts/prepare_data.py"
