# ---- configuration: validation, derived constants, path patterns and input functions ----

from pathlib import Path

import jsonschema
import yaml
from snakemake.utils import validate

from harness.fingerprint import SOURCES, fingerprint
from harness.jobs import data_settings, run_settings

SCHEMA = Path(workflow.current_basedir) / ".." / "schemas" / "config.schema.yaml"


def check_config(config, schema_path):
    """Raise one ValueError listing every problem of the configuration, each with its key."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = jsonschema.Draft202012Validator(schema)
    problems = []
    for error in sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.path))):
        where = ".".join(str(part) for part in error.absolute_path)
        if error.validator == "additionalProperties":
            allowed = sorted(error.schema.get("properties", {}))
            for key in sorted(set(error.instance) - set(allowed)):
                name = f"{where}.{key}" if where else key
                problems.append(
                    f"{name}: unknown key {key!r}; allowed here: {', '.join(allowed)} "
                    "(check the spelling)"
                )
        else:
            problems.append(f"{where or '(top level)'}: {error.message}")
    if problems:
        files = ", ".join(map(str, workflow.configfiles)) or "the configuration"
        raise ValueError(
            f"invalid configuration ({files}):\n  - " + "\n  - ".join(problems)
            + "\nSee workflow/schemas/config.schema.yaml for every key, its type and its default."
        )


check_config(config, SCHEMA)
validate(config, schema="../schemas/config.schema.yaml")  # fills in the schema's defaults

RESULTS = config["paths"]["results"]
LOGS = config["paths"]["logs"]
BENCHMARKS = config["paths"]["benchmarks"]
REPORTS = config["paths"]["reports"]
EXPERIMENTS = config["experiments"]
TRAINING = config["training"]
GPUS = 1 if config["device"].startswith("cuda") else 0
THREADS = config["threads"]
CONDA_ENV = "../../environment.yml"  # used only with --sdm conda (untested)


def artifacts(method):
    """Prediction artifacts one training method yields (IVON: model average and IVON@mean)."""
    return ["ivon", "ivon_mean"] if method == "ivon" else [method]


def get_runs():
    """Every (dataset, arch, method artifact, seed) the configuration asks for."""
    return [
        (dataset, arch, artifact, seed)
        for dataset, experiment in EXPERIMENTS.items()
        for arch in experiment["archs"]
        for method in experiment["methods"]
        for artifact in artifacts(method)
        for seed in experiment["seeds"]
    ]


def get_tables():
    """Every (dataset, arch) with results."""
    return [(d, a) for d, experiment in EXPERIMENTS.items() for a in experiment["archs"]]


wildcard_constraints:
    dataset="|".join(sorted(EXPERIMENTS)),
    arch="|".join(sorted({a for _, a in get_tables()})),
    method="|".join(sorted({run[2] for run in get_runs()})),
    seed=r"\d+",


RUN = f"{RESULTS}/{{dataset}}/{{arch}}/{{method}}/seed{{seed}}"
TABLE = f"{REPORTS}/{{dataset}}/{{arch}}"


def run_path(name, dataset, arch, method, seed):
    return f"{RESULTS}/{dataset}/{arch}/{method}/seed{seed}/{name}"


def predictions_path(dataset, arch, artifact, seed):
    """Predictions of an artifact; IVON@mean is written beside the IVON run that yields it."""
    if artifact == "ivon_mean":
        return run_path("predictions_mean.npz", dataset, arch, "ivon", seed)
    return run_path("predictions.npz", dataset, arch, artifact, seed)


def get_predictions(wildcards):
    return predictions_path(wildcards.dataset, wildcards.arch, wildcards.method, wildcards.seed)


# ---- per-method settings, passed to the scripts as params ----

# Fingerprints of the source code that determines each kind of training job's results (the
# `source` param of the training rules): a code change reruns exactly the jobs it affects.
SOURCE_FINGERPRINTS = {kind: fingerprint(*sources) for kind, sources in SOURCES.items()}


def get_data_settings(method):
    """Returns a function of the wildcards: how `method` loads its data."""
    return lambda wildcards: data_settings(config, method, wildcards.dataset)


def get_run_config(method):
    """Returns a function of the wildcards: keyword arguments of MPConfig / BaselineConfig."""
    return lambda wildcards: run_settings(config, method, wildcards.seed)


def get_identity(method):
    """Returns a function of the wildcards: what a resumed checkpoint must match."""

    def identity(wildcards):
        return {
            "method": method,
            "source": SOURCE_FINGERPRINTS[method],
            "dataset": wildcards.dataset,
            "arch": wildcards.arch,
            "run": get_run_config(method)(wildcards),
            "data": get_data_settings(method)(wildcards),
            "experiment": {
                k: v for k, v in EXPERIMENTS[wildcards.dataset].items() if k != "seeds"
            },
        }

    return identity


def get_benchmark(wildcards):
    """Benchmark file of the training job that produced a prediction artifact."""
    trained = "ivon" if wildcards.method == "ivon_mean" else wildcards.method
    return f"{BENCHMARKS}/train_{trained}/{wildcards.dataset}/{wildcards.arch}/seed{wildcards.seed}.tsv"


# ---- inputs of the evaluation and report rules ----


def get_all_metrics(wildcards=None):
    return [run_path("metrics.json", *run) for run in get_runs()]


def get_first_seed_predictions(wildcards):
    experiment = EXPERIMENTS[wildcards.dataset]
    seed = experiment["seeds"][0]
    return {
        artifact: predictions_path(wildcards.dataset, wildcards.arch, artifact, seed)
        for method in experiment["methods"]
        for artifact in artifacts(method)
    }


def get_table_metrics(wildcards):
    return [
        run_path("metrics.json", *run)
        for run in get_runs()
        if run[0] == wildcards.dataset and run[1] == wildcards.arch
    ]


REPORT_FILES = (
    "table.md",
    "table.csv",
    "table.tex",
    "reliability.png",
    "learning_curves.png",
    "epoch_seconds.png",
)


def get_report_outputs():
    outputs = [rules.aggregate_metrics.output.csv, rules.render_claims.output.claims]
    for dataset, arch in get_tables():
        for name in REPORT_FILES:
            outputs.append(f"{REPORTS}/{dataset}/{arch}/{name}")
    return outputs


# ---- the coverage study (workflow/rules/coverage.smk) ----

COVERAGE = config.get("coverage")


def get_coverage_outputs():
    return [
        f"{RESULTS}/coverage/summary.json",
        f"{REPORTS}/coverage/table.md",
        f"{REPORTS}/coverage/table.csv",
        *[f"{REPORTS}/coverage/{variant}.png" for variant in COVERAGE["variants"]],
    ]


def get_coverage_predictions(wildcards=None):
    return {
        variant: [f"{RESULTS}/coverage/{variant}/{method}.npz" for method in COVERAGE["methods"]]
        for variant in COVERAGE["variants"]
    }


# ---- final outputs: each rules file registers its section; the Snakefile collects them ----
#
# A new section (e.g. a coverage study in workflow/rules/coverage.smk with a `coverage:` key in
# the configuration) adds its key to the top-level `properties` of the schema, is included in
# the Snakefile, and registers what `all` builds and what the claims read:
#
#     if "coverage" in config:
#         register_outputs("coverage", get_coverage_outputs)
#         CLAIM_EVIDENCE["coverage"] = f"{RESULTS}/coverage/summary.json"
#
# The claim evaluator of C2 (amp/claims.py) reads that file as
# {"correlation": float, "median_coverage": {"x<-10": [1σ, 2σ, 3σ], "x>10": [...]}}.

OUTPUT_SECTIONS = {}
CLAIM_EVIDENCE = {}  # evidence name -> JSON file read by render_claims (e.g. "coverage")


def register_outputs(section, function):
    """Add a section of final outputs; `function()` returns a list of paths."""
    OUTPUT_SECTIONS[section] = function


def get_final_outputs(wildcards):
    return [path for section in OUTPUT_SECTIONS.values() for path in section()]
