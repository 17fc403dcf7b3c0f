"""Speed and memory of message passing against AdamW and IVON on the same networks.

``python -m harness.bench`` times one pass (batch 128) for every method on the named
architectures, in one run on one device, on real inputs (Fashion-MNIST; for ``conv890k``
CIFAR-10 where installed, else Fashion-MNIST padded to 32×32 and replicated to 3 channels) and
on random ones: MP with the default schedule in float32 (subnormals flushed, and on real inputs
also kept) and float64, each with compiled kernels and eagerly (``Trainer(compiled=...)``), MP
with the sequential reference schedule (on a smaller subset; its per-example rate is what
matters), AdamW and IVON (float32). Every measurement runs in its own
process (so that its peak resident memory is its own), after a warm-up pass, as the median of
several repeats, and records its floating-point mode (dtype, subnormals flushed or not) and
thread count. The table reports seconds per 1,000 examples, the ratios MP/AdamW and MP/IVON
from the same run and inputs, peak memory, and the estimated time of the paper's full schedule
on real data (25 epochs; MP sweeps each batch ``ceil(e/2)`` times in epoch ``e``: 169 sweeps,
of which 167 keep per-site messages). A second table gives the share of MP's time per layer
kind and direction (:mod:`harness.bench_profile`).

``--quick`` runs a quarter of the examples once; ``--tiny`` a few examples (used by the tests).

(Over 400 lines: the measurement, its subprocess per row and the table it prints belong to one
command; the profile breakdown is apart in :mod:`harness.bench_profile`.)
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import platform
import resource
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from amp import io, specs
from amp.network import Network
from amp.runtime import denormals_flushed, resolve_device, resolve_dtype, synchronize
from amp.trainer import Trainer, default_iterations
from harness.bench_profile import profile_pass

__all__ = [
    "Measurement",
    "main",
    "measure",
    "paper_seconds",
    "random_data",
    "real_data",
    "render",
    "time_baseline",
]

BATCH_SIZE = 128
PAPER_EPOCHS = 25
"""The paper's schedule: 25 epochs (MP: ``ceil(e/2)`` sweeps per batch in epoch ``e``)."""

EXAMPLES = {"mlp": 2048, "lenet5": 512, "conv890k": 64, "mlp5m": 256}
"""Examples per timed pass (MP's cost per example does not depend on the count)."""

SEQUENTIAL_EXAMPLES = {"mlp": 256, "lenet5": 64, "conv890k": 8, "mlp5m": 32}
"""Examples per timed pass of the (slow) sequential reference schedule."""

TINY_EXAMPLES = 32

QUICK_FRACTION = 0.25
"""``--quick``: this fraction of the examples (at least one batch's worth of groups), once."""

INPUTS = ("real", "random")


@dataclass(frozen=True)
class Measurement:
    """One timed configuration.

    Attributes:
        arch: Named architecture.
        method: ``mp``, ``mp_sequential``, ``adamw`` or ``ivon``.
        dtype: ``float32`` or ``float64``.
        examples: Examples per pass.
        seconds_per_1000: Median seconds of one pass (one sweep) per 1,000 examples.
        sweep_seconds_per_1000: MP only: seconds per 1,000 examples of one sweep when a batch
            is swept twice per visit (epochs ≥ 3 keep per-site messages); NaN otherwise.
        peak_rss_mb: Peak resident memory of the measuring process.
        peak_gpu_mb: Peak allocated GPU memory (CUDA only), else NaN.
        inputs: ``real:<data set>`` or ``random``.
        flush_denormal: Whether subnormals were flushed to zero while it was timed.
        threads: PyTorch's intra-op threads of the measuring process.
        compiled: MP only: the weight layers' and LeakyReLU messages by compiled kernels
            (``Trainer(compiled=True)``) rather than eagerly.
        profile: MP (default schedule) only: share of time per ``"<layer kind> <direction>"``.
    """

    arch: str
    method: str
    dtype: str
    examples: int
    seconds_per_1000: float
    sweep_seconds_per_1000: float
    peak_rss_mb: float
    peak_gpu_mb: float
    inputs: str = "random"
    flush_denormal: bool = False
    threads: int = 1
    compiled: bool = False
    profile: dict[str, float] | None = None


def random_data(arch: str, n: int, dtype: torch.dtype, device: torch.device) -> tuple:
    """``n`` random inputs shaped for ``arch`` (standard normal) and labels, seeded."""
    gen = torch.Generator().manual_seed(0)
    shape = specs.default_input_shape(arch)
    x = torch.randn(n, *shape, generator=gen).to(dtype=dtype, device=device)
    y = torch.randint(0, 10, (n,), generator=gen).to(device)
    return x, y


def real_data(arch: str, n: int, dtype: torch.dtype, device: torch.device) -> tuple:
    """``n`` real training examples shaped for ``arch``, and the data set's name.

    Fashion-MNIST (globally normalised) for the 28×28 architectures; for 3×32×32 ones CIFAR-10
    where installed, else Fashion-MNIST padded to 32×32 (edge pixels replicated) and its one
    channel replicated to three.

    Raises:
        harness.data.DatasetNotFoundError: If Fashion-MNIST is not installed (``make data``).
    """
    from harness.data import DatasetNotFoundError, load_dataset

    shape = specs.default_input_shape(arch)
    data = None
    if shape == (3, 32, 32):
        try:
            data = load_dataset("cifar10", subset=n, normalization="global", dtype=dtype)
        except DatasetNotFoundError:
            data = None
    if data is None:
        data = load_dataset("fashion_mnist", subset=n, normalization="global", dtype=dtype)
    x, name = data.x_train, data.name
    if tuple(x.shape[1:]) != shape:
        if shape != (3, 32, 32):
            raise ValueError(f"no real inputs of shape {shape} for {arch!r}")
        pad = (32 - x.shape[-1]) // 2
        x = torch.nn.functional.pad(x, (pad, pad, pad, pad), mode="replicate")
        x = x.expand(-1, 3, -1, -1).contiguous()
        name += "(3x32x32)"
    return x.to(device), data.y_train.to(device), f"real:{name}"


def _data(task: dict, dtype: torch.dtype, device: torch.device) -> tuple:
    if task["inputs"] == "real":
        return real_data(task["arch"], task["examples"], dtype, device)
    return (*random_data(task["arch"], task["examples"], dtype, device), "random")


def _time_mp(x, y, arch, dtype, schedule, device, repeats, flush, compiled, profile) -> tuple:
    n = x.shape[0]
    net = Network(specs.arch(arch), specs.default_input_shape(arch), dtype=dtype, device=device)
    trainer = Trainer(net, BATCH_SIZE, schedule=schedule, flush_denormal=flush, compiled=compiled)
    modes = []
    trainer.fit(x, y, epochs=1, iterations=1, callback=lambda t: modes.append(denormals_flushed()))

    def passes(iterations: int) -> float:
        times = []
        for _ in range(repeats):
            synchronize(device)
            start = time.perf_counter()
            trainer.fit(x, y, epochs=1, iterations=iterations)
            synchronize(device)
            times.append(time.perf_counter() - start)
        return statistics.median(times) / iterations * 1000 / n

    shares = profile_pass(trainer, x, y) if profile else None
    return passes(1), passes(2), modes[0], shares


def time_baseline(x, y, arch, method, device, repeats) -> float:
    """Median seconds per 1,000 examples of one AdamW or IVON epoch after a warm-up epoch."""
    from baselines.train import TrainConfig, train

    n = x.shape[0]
    config = TrainConfig(
        method=method, epochs=repeats + 1, batch_size=BATCH_SIZE, device=str(device), progress=False
    )
    history = train(specs.arch(arch), x, y, config).history
    return statistics.median(r.seconds for r in history[1:]) * 1000 / n


def _worker(task: dict, queue) -> None:
    torch.set_num_threads(task["threads"])
    device = resolve_device(task["device"])
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    dtype = resolve_dtype(task["dtype"])
    x, y, inputs = _data(task, dtype, device)
    sweep, shares = math.nan, None
    if task["method"] in ("mp", "mp_sequential"):
        schedule = "sequential" if task["method"] == "mp_sequential" else "scaled"
        per_1000, sweep, flushed, shares = _time_mp(
            x, y, task["arch"], dtype, schedule, device, task["repeats"],
            task["flush_denormal"], task.get("compiled", False), task["method"] == "mp",
        )  # fmt: skip
    else:
        flushed = denormals_flushed()
        per_1000 = time_baseline(x, y, task["arch"], task["method"], device, task["repeats"])
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    gpu = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else math.nan
    queue.put((per_1000, sweep, rss, gpu, inputs, flushed, torch.get_num_threads(), shares))


def measure(task: dict) -> Measurement:
    """Run one measurement in a fresh process (its peak memory is its own).

    Args:
        task: ``arch``, ``method``, ``dtype``, ``examples``, ``repeats``, ``device``,
            ``threads``, ``inputs`` (``"real"`` or ``"random"``), ``flush_denormal`` (MP).
    """
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_worker, args=(task, queue))
    process.start()
    process.join()
    if process.exitcode != 0:
        raise RuntimeError(f"measurement {task} failed (exit code {process.exitcode})")
    per_1000, sweep, rss, gpu, inputs, flushed, threads, shares = queue.get()
    return Measurement(
        task["arch"], task["method"], task["dtype"], task["examples"], per_1000, sweep, rss, gpu,
        inputs, flushed, threads, task.get("compiled", False), shares,
    )  # fmt: skip


def paper_seconds(row: Measurement, train_size: int) -> float:
    """Estimated seconds of the paper's schedule (25 epochs) on ``train_size`` examples."""
    if not row.method.startswith("mp"):
        return PAPER_EPOCHS * row.seconds_per_1000 * train_size / 1000
    sweeps = [default_iterations(e) for e in range(1, PAPER_EPOCHS + 1)]
    kept = (
        row.sweep_seconds_per_1000
        if math.isfinite(row.sweep_seconds_per_1000)
        else row.seconds_per_1000
    )
    seconds = sum(row.seconds_per_1000 if s == 1 else s * kept for s in sweeps)
    return seconds * train_size / 1000


TRAIN_SIZE = {"mlp": 60_000, "lenet5": 60_000, "conv890k": 50_000, "mlp5m": 60_000}
"""Training-set size of each architecture's data set (MNIST-like or CIFAR-10)."""


def _kernels(record: dict) -> str:
    if not record["method"].startswith("mp"):
        return "–"
    return "compiled" if record["compiled"] else "eager"


def _kind(inputs: str) -> str:
    return "random" if inputs == "random" else "real"


def render(rows: list[Measurement], device: str) -> tuple[str, list[dict]]:
    """The Markdown report (speed table, then the profile table) and the CSV records."""
    records = []
    for row in rows:
        same = [r for r in rows if r.arch == row.arch and _kind(r.inputs) == _kind(row.inputs)]
        base = {r.method: r.seconds_per_1000 for r in same if not r.method.startswith("mp")}
        record = {k: v for k, v in asdict(row).items() if k != "profile"}
        record["mp_over_adamw"] = row.seconds_per_1000 / base.get("adamw", math.nan)
        record["mp_over_ivon"] = row.seconds_per_1000 / base.get("ivon", math.nan)
        real = _kind(row.inputs) == "real"
        hours = paper_seconds(row, TRAIN_SIZE[row.arch]) / 3600 if real else math.nan
        record["paper_run_hours"] = hours
        records.append(record)
    lines = [
        f"# Training speed on `{device}`",
        "",
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}, batch "
        f"{BATCH_SIZE}. Seconds per 1,000 examples of one pass (median of repeats after a "
        "warm-up); ratios against AdamW and IVON of the same run on the same inputs; "
        "subnormals flushed to zero or kept, and PyTorch threads, as measured in each "
        "process; peak resident memory of the measuring process; estimated hours of the "
        f"paper's schedule on real data ({PAPER_EPOCHS} epochs; MP sweeps each batch ceil(e/2) "
        "times).",
        "",
        "| arch | inputs | method | dtype | flush | kernels | threads | examples | s / 1k "
        "| s / 1k per kept sweep | ×AdamW | ×IVON | peak RSS (MB) | peak GPU (MB) "
        "| paper run (h) |",
        "|---|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in records:
        lines.append(
            f"| {r['arch']} | {r['inputs']} | {r['method']} | {r['dtype']} "
            f"| {'on' if r['flush_denormal'] else 'off'} | {_kernels(r)} | {r['threads']} "
            f"| {r['examples']} "
            f"| {r['seconds_per_1000']:.4g} | {r['sweep_seconds_per_1000']:.4g} "
            f"| {r['mp_over_adamw']:.3g} | {r['mp_over_ivon']:.3g} | {r['peak_rss_mb']:.0f} "
            f"| {r['peak_gpu_mb']:.0f} | {r['paper_run_hours']:.3g} |"
        )
    lines += [
        "",
        "`mp`: the default (scaled) schedule; `mp_sequential`: one example at a time (the "
        "reference). flush: subnormal numbers flushed to zero while timed (MP's default on the "
        "CPU; the baselines run in the IEEE default mode). s / 1k per kept sweep: MP's cost per "
        "sweep when a batch is swept twice per visit (epochs ≥ 3). kernels: MP's weight "
        "layers' and LeakyReLU messages by compiled kernels or eagerly (compilation happens "
        "in the untimed warm-up pass). NaN: not applicable.",
        *_profile_lines([r for r in rows if r.profile]),
    ]
    return "\n".join(lines) + "\n", records


def _profile_lines(rows: list[Measurement]) -> list[str]:
    """Share of each MP pass per layer kind and direction (% of wall-clock time)."""
    if not rows:
        return []
    keys = sorted({k for r in rows for k in r.profile if k != "other"}) + ["other"]
    lines = [
        "",
        "## Where MP's time goes",
        "",
        "Share (%) of one pass of the default schedule per layer kind and direction (each "
        "layer call timed; other: the trainer's cavities, the message store and the marginal "
        "updates).",
        "",
        "| arch | inputs | dtype | flush | kernels | " + " | ".join(keys) + " |",
        "|---|---|---|---|---|" + "---:|" * len(keys),
    ]
    for r in rows:
        shares = " | ".join(f"{100 * r.profile.get(k, 0.0):.1f}" for k in keys)
        flush = "on" if r.flush_denormal else "off"
        kernels = _kernels(asdict(r))
        lines.append(f"| {r.arch} | {r.inputs} | {r.dtype} | {flush} | {kernels} | {shares} |")
    return lines


def epoch_of_mlp5m(store_dir: str, *, subset: int | None = None, threads: int = 2) -> dict:
    """One MP epoch of ``mlp5m`` on Fashion-MNIST with a memory-mapped float32 store (claim C3).

    The batch message store of 469 batches × 5.6 M parameters × 2 numbers is 21 GB in float32
    (42 GB in float64): it lives in files under ``store_dir``; the process keeps only the
    marginals and the pages in use.

    Returns:
        ``seconds``, ``peak_rss_mb``, ``store_gb``, ``examples``, ``accuracy`` (test set).
    """
    from harness import metrics
    from harness.data import load_dataset

    torch.set_num_threads(threads)
    data = load_dataset("fashion_mnist", subset=subset, dtype=torch.float32)
    net = Network(specs.arch("mlp5m"), data.input_shape, dtype=torch.float32)
    trainer = Trainer(net, BATCH_SIZE, store_dtype=torch.float32, store_dir=store_dir)
    start = time.perf_counter()
    trainer.fit(data.x_train, data.y_train, epochs=1)
    seconds = time.perf_counter() - start
    accuracy = metrics.accuracy(net.predict(data.x_test), data.y_test)
    store = sum(sw.nbytes + sb.nbytes for sw, sb in trainer.stores) / 1e9
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "examples": int(data.x_train.shape[0]),
        "seconds": seconds,
        "peak_rss_mb": rss,
        "store_gb": store,
        "accuracy": accuracy,
    }


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (``python -m harness.bench --help``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archs", nargs="+", default=["mlp", "lenet5", "conv890k", "mlp5m"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="reports", help="directory of bench_<device>.md/.csv")
    parser.add_argument("--tiny", action="store_true", help="a few examples (for tests)")
    parser.add_argument(
        "--quick", action="store_true", help="a quarter of the examples, one repeat (minutes)"
    )
    parser.add_argument(
        "--inputs", nargs="+", choices=INPUTS, default=list(INPUTS), help="which inputs to time"
    )
    parser.add_argument(
        "--mlp5m-epoch",
        metavar="STORE_DIR",
        help="instead: one MP epoch of mlp5m on Fashion-MNIST with its store in STORE_DIR",
    )
    args = parser.parse_args(argv)
    if args.mlp5m_epoch:
        result = epoch_of_mlp5m(args.mlp5m_epoch, threads=args.threads)
        lines = [
            "# One MP epoch of mlp5m (5,592,010 parameters) on Fashion-MNIST",
            "",
            "float32, default schedule, batch 128, batch message store memory-mapped in float32.",
            "",
            "| examples | seconds | peak RSS (GB) | store on disk (GB) | test accuracy |",
            "|---:|---:|---:|---:|---:|",
            f"| {result['examples']} | {result['seconds']:.0f} "
            f"| {result['peak_rss_mb'] / 1024:.2f} | {result['store_gb']:.1f} "
            f"| {result['accuracy']:.4f} |",
        ]
        io.write_text(Path(args.out) / "bench_mlp5m_epoch.md", "\n".join(lines) + "\n")
        print("\n".join(lines))
        return 0
    for arch in args.archs:
        specs.arch(arch)  # unknown names fail before any work
    rows = []
    for arch, inputs in ((a, i) for a in args.archs for i in args.inputs):
        plan = [("mp", "float32", True, True), ("mp", "float32", True, False)]
        plan += [("mp", "float32", False, False)] if inputs == "real" else []
        plan += [("mp", "float64", True, True), ("mp", "float64", True, False)]
        plan += [("mp_sequential", "float64", True, False)]
        plan += [("adamw", "float32", False, False), ("ivon", "float32", False, False)]
        for method, dtype, flush, compiled in plan:
            table = SEQUENTIAL_EXAMPLES if method == "mp_sequential" else EXAMPLES
            examples = table[arch]
            if args.quick:
                examples = max(TINY_EXAMPLES, int(examples * QUICK_FRACTION))
            task = {
                "arch": arch,
                "method": method,
                "dtype": dtype,
                "examples": TINY_EXAMPLES if args.tiny else examples,
                "repeats": 1 if args.tiny or args.quick else args.repeats,
                "device": args.device,
                "threads": args.threads,
                "inputs": inputs,
                "flush_denormal": flush,
                "compiled": compiled,
            }
            row = measure(task)
            print(
                f"{arch} {row.inputs} {method} {dtype} flush={row.flush_denormal} "
                f"compiled={row.compiled}: "
                f"{row.seconds_per_1000:.4g} s/1k",
                flush=True,
            )
            rows.append(row)
    device = resolve_device(args.device).type
    markdown, records = render(rows, device)
    out = Path(args.out)
    io.write_text(out / f"bench_{device}.md", markdown)
    header = list(records[0])
    csv = [",".join(header)] + [",".join(str(r[k]) for k in header) for r in records]
    io.write_text(out / f"bench_{device}.csv", "\n".join(csv) + "\n")
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
