# ---- configuration: validation, derived constants, path patterns and input functions ----

from pathlib import Path

import jsonschema
import yaml
from snakemake.utils import validate

from harness.fingerprint import SOURCES, fingerprint
from harness.jobs import data_settings, drop_null_ood, run_settings

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


check_config(drop_null_ood(config), SCHEMA)
validate(config, schema="../schemas/config.schema.yaml")  # fills in the schema's defaults

RESULTS = config["paths"]["results"]
LOGS = config["paths"]["logs"]
BENCHMARKS = config["paths"]["benchmarks"]
REPORTS = config["paths"]["reports"]
EXPERIMENTS = config.get("experiments", {})  # a configuration may hold only other sections
TRAINING = config.get("training", {})
EVALUATION = config.get("evaluation", {})
SHIFT = bool(
    EVALUATION.get("rotations")
    or (EVALUATION.get("corruptions") and EVALUATION.get("severities"))
)
SETS = SHIFT or bool(EVALUATION.get("ood_sets"))  # extra evaluation sets: the predict_sets rule
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
    return lambda wildcards: run_settings(config, method, wildcards.seed, wildcards.dataset)


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


def trained_method(artifact):
    """The training method behind a prediction artifact (IVON@mean is IVON's run)."""
    return "ivon" if artifact == "ivon_mean" else artifact


def get_benchmark(wildcards):
    """Benchmark file of the training job that produced a prediction artifact."""
    trained = trained_method(wildcards.method)
    return f"{BENCHMARKS}/train_{trained}/{wildcards.dataset}/{wildcards.arch}/seed{wildcards.seed}.tsv"


def get_trained_model(wildcards):
    """The model.pt of the training job behind a prediction artifact."""
    method = trained_method(wildcards.method)
    return run_path("model.pt", wildcards.dataset, wildcards.arch, method, wildcards.seed)


def get_sets_input(wildcards):
    """The run's predictions on the extra evaluation sets, when the configuration has any."""
    if not SETS:
        return {}
    args = (wildcards.dataset, wildcards.arch, wildcards.method, wildcards.seed)
    return {"sets": run_path("sets.npz", *args)}


def get_sets_params(name):
    """Returns a function of the wildcards: `run` or `data_settings` of the trained method."""

    def params(wildcards):
        method = trained_method(wildcards.method)
        settings = get_run_config if name == "run" else get_data_settings
        return settings(method)(wildcards)

    return params


def get_ood_name(wildcards):
    return (EXPERIMENTS[wildcards.dataset].get("ood") or {}).get("name")


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


def report_files():
    """Files of every (dataset, arch) report directory, as the configuration asks."""
    files = list(REPORT_FILES)
    if TRAINING.get("evaluate_every_epoch"):
        files += ["calibration_curves.png", "epochs.md", "epochs.csv"]
    if EVALUATION.get("selective"):
        files += ["selective.md", "selective.csv", "selective.png"]
    if SHIFT:
        files += ["shift.md", "shift.csv", "shift.png"]
    if EVALUATION.get("ood_sets"):
        files += ["ood.md", "ood.csv"]
    return files


def get_report_outputs():
    outputs = [rules.aggregate_metrics.output.csv, rules.render_claims.output.claims]
    for dataset, arch in get_tables():
        for name in report_files():
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


# ---- the UCI regression benchmark (workflow/rules/uci.smk) ----

from harness.data.uci import UCI_SETS

UCI = config.get("uci")
if UCI:
    UCI_RESULTS = f"{RESULTS}/{UCI['name']}"
    UCI_REPORTS = f"{REPORTS}/{UCI['name']}"
    UCI_LOGS = f"{LOGS}/{UCI['name']}"
UCI_FILES = ("table.md", "table.csv", "table.tex", "rmse_ll.png")


def uci_splits(name):
    """The configured splits of a set (`all`: every standard split)."""
    chosen = UCI["sets"][name]
    return list(range(UCI_SETS[name].splits)) if chosen == "all" else list(chosen)


def uci_protocol():
    """Keyword arguments of harness.uci.protocol.Protocol given in the configuration."""
    return {k: UCI[k] for k in ("noise_grid", "validation_seed", "seed") if k in UCI}


def get_uci_outputs():
    return [f"{UCI_RESULTS}/summary.json", *[f"{UCI_REPORTS}/{f}" for f in UCI_FILES]]


def get_uci_runs(wildcards=None):
    """The runs file of every (set, method), named runs_<set>_<method>."""
    return {
        f"runs_{name}_{method}": f"{UCI_RESULTS}/{name}/{method}/runs.json"
        for name in UCI["sets"]
        for method in UCI["methods"]
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
