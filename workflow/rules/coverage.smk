# ---- the synthetic coverage study (claim C2): many networks per method on sine data ----

if COVERAGE:
    register_outputs("coverage", get_coverage_outputs)

    localrules:
        summarize_coverage,

    CLAIM_EVIDENCE["coverage"] = f"{RESULTS}/coverage/summary.json"

    wildcard_constraints:
        variant="|".join(COVERAGE["variants"]),
        study_method="|".join(COVERAGE["methods"]),

    rule train_coverage:
        output:
            predictions=f"{RESULTS}/coverage/{{variant}}/{{study_method}}.npz",
        log:
            f"{LOGS}/train_coverage/{{variant}}/{{study_method}}.log",
        benchmark:
            f"{BENCHMARKS}/train_coverage/{{variant}}/{{study_method}}.tsv"
        params:
            source=lambda wc: SOURCE_FINGERPRINTS[
                "coverage_mp" if wc.study_method == "mp" else "coverage_baseline"
            ],
            study=COVERAGE,
        threads: THREADS
        conda:
            CONDA_ENV
        resources:
            gpu=0,
        script:
            "../scripts/train_coverage.py"

    rule summarize_coverage:
        input:
            unpack(get_coverage_predictions),
        output:
            summary=f"{RESULTS}/coverage/summary.json",
            table_md=f"{REPORTS}/coverage/table.md",
            table_csv=report(
                f"{REPORTS}/coverage/table.csv",
                caption="../report/coverage.rst",
                category="Coverage study",
            ),
            figures=[
                report(
                    f"{REPORTS}/coverage/{variant}.png",
                    caption="../report/coverage.rst",
                    category="Coverage study",
                )
                for variant in COVERAGE["variants"]
            ],
        log:
            f"{LOGS}/summarize_coverage.log",
        params:
            variants=COVERAGE["variants"],
            bootstrap=COVERAGE["bootstrap"],
            seed=COVERAGE["seed"],
        threads: 1
        conda:
            CONDA_ENV
        script:
            "../scripts/summarize_coverage.py"
