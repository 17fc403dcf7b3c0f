# ---- training speed and memory of every method on the named architectures (harness.bench) ----

BENCH = config.get("bench")

if BENCH:
    register_outputs("bench", lambda: [f"{REPORTS}/bench_{BENCH['device']}.md"])

    rule bench_training:
        output:
            table=f"{REPORTS}/bench_{BENCH['device']}.md",
            csv=f"{REPORTS}/bench_{BENCH['device']}.csv",
        log:
            f"{LOGS}/bench_training.log",
        params:
            archs=BENCH["archs"],
            device=BENCH["device"],
            repeats=BENCH["repeats"],
            out=REPORTS,
        threads: BENCH["threads"]
        conda:
            CONDA_ENV
        resources:
            gpu=1 if BENCH["device"].startswith("cuda") else 0,
        script:
            "../scripts/bench_training.py"
