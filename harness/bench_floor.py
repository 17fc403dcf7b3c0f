"""The arithmetic floor of an MP pass of a fully connected network, set against AdamW.

``python -m harness.bench_floor`` answers how fast the default (``scaled``) schedule could be if
nothing but its unavoidable arithmetic ran. It trains a few batches on real inputs
(Fashion-MNIST, compiled kernels, subnormals flushed), keeps one group's tensors of every fully
connected layer (its forward pass and the backward messages arriving at it), and times alone,
on those tensors, the kernels that every implementation of the schedule has to run per group:

==========  ========================================================================
forward     the matrix products of the forward moments (means; variances: two products
            for a deterministic input, three for a Gaussian one)
joint       the joint innovations: the pair products ``Σ_i x_ni x_mi Var(W_ij)`` of the
            group's examples and the ``G × G`` solves per output unit
            (:func:`amp.schedules.joint_innovations`)
terms       the exact messages to the weights and the inputs, one term per weight and
            example (:mod:`amp.factors.linear_fused`, compiled)
update      one product of the weights' cavity and the group's message (the least memory
            traffic of a marginal update)
==========  ========================================================================

Each is scaled to 1,000 examples and divided by AdamW's time for one pass over the same inputs,
measured in the same process (first, in the IEEE default floating-point mode). The full MP pass
is measured in the same process too; the gap between it and the floor's sum is what dispatch,
allocation and the glue between kernels cost, which fusing can remove. The floor leaves out the
activations and the output layer (elementwise over ``(G, D_out)``, small) and so bounds the
pass from below.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from amp import io, specs
from amp.factors import linear, linear_fused
from amp.gaussian import NatGaussian
from amp.layers import WeightLayer
from amp.network import Network
from amp.runtime import flush_denormal
from amp.schedules import DEFAULT_GROUP_SIZE, joint_innovations
from amp.trainer import Trainer
from harness.bench import BATCH_SIZE, EXAMPLES, random_data, real_data, time_baseline

__all__ = ["FloorRow", "floor_rows", "main", "render"]

PRIMITIVES = ("forward", "joint", "terms", "update")
"""The kernels timed per fully connected layer (see the module's table)."""


@dataclass(frozen=True)
class FloorRow:
    """Seconds per 1,000 examples of one kernel of one layer (or of a whole pass).

    Attributes:
        layer: ``"<index> <D_in>×<D_out>"``, or ``"pass"`` for whole passes.
        kernel: One of :data:`PRIMITIVES`, or ``"mp"`` / ``"adamw"`` for whole passes.
        seconds_per_1000: Median time, scaled to 1,000 examples.
    """

    layer: str
    kernel: str
    seconds_per_1000: float


def _median_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up (compiles where compiled)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _capture(net: Network) -> dict[int, tuple[WeightLayer, linear.LinearForward, NatGaussian]]:
    """Wrap the fully connected layers' ``backward`` to keep their latest group's tensors."""
    captured = {}
    for index, layer in enumerate(net.layers):
        if not isinstance(layer, WeightLayer) or layer.is_conv:
            continue

        def backward(m_back, group, _layer=layer, _index=index, _inner=layer.backward):
            captured[_index] = (_layer, _layer._cache[1], m_back.unsqueeze(-2))
            return _inner(m_back, group)

        layer.backward = backward
    return captured


def _kernels(
    layer: WeightLayer, fwd: linear.LinearForward, m_back: NatGaussian
) -> dict[str, Callable[[], object]]:
    """The kernels of :data:`PRIMITIVES` on one group's tensors, as calls without arguments."""
    x, x_var = fwd.x_mean, fwd.x_var
    w_mean, w_var = fwd.w_mean, fwd.w_var

    def forward() -> None:
        linear._matmul(x, w_mean)
        linear._matmul(x * x, w_var)
        if x_var is not None:
            linear._matmul(x_var, w_var + w_mean * w_mean)

    corrected, _ = joint_innovations(fwd, m_back)
    return {
        "forward": forward,
        "joint": lambda: joint_innovations(fwd, m_back),
        "terms": lambda: linear_fused.group_backward(fwd, corrected, with_input=not layer.first),
        "update": lambda: layer.q_w.mul(layer.q_w),  # the cost of any product of that size
    }


def floor_rows(
    arch: str, x: torch.Tensor, y: torch.Tensor, *, repeats: int = 5
) -> tuple[list[FloorRow], bool]:
    """Time the floor's kernels of every fully connected layer, MP's pass and AdamW's pass.

    Args:
        arch: A named architecture whose weight layers are fully connected (``mlp``, ``mlp5m``).
        x: Training inputs, ``(N, *input_shape)``, at least one batch.
        y: Labels ``(N,)``.
        repeats: Timed repeats of every kernel and pass (the median is reported).

    Returns:
        The rows, and whether subnormals were flushed while MP's kernels ran.

    Raises:
        ValueError: If the architecture has a convolution (its floor is not modelled here).
    """
    layer_specs = specs.arch(arch)
    if any(isinstance(s, specs.Conv2d) for s in layer_specs):
        raise ValueError(f"{arch!r} has convolutions; the floor covers fully connected networks")
    n = x.shape[0]
    adamw = time_baseline(x, y, arch, "adamw", x.device, repeats)  # IEEE mode, before MP
    net = Network(layer_specs, specs.default_input_shape(arch), dtype=x.dtype, device=x.device)
    trainer = Trainer(net, BATCH_SIZE, compiled=True)
    captured = _capture(net)
    trainer.fit(x, y, epochs=1, iterations=1)  # warm-up: compiles, and captures a group
    seconds = _median_seconds(lambda: trainer.fit(x, y, epochs=1, iterations=1), repeats)
    rows = [FloorRow("pass", "adamw", adamw), FloorRow("pass", "mp", seconds * 1000 / n)]
    with flush_denormal(True, x.device) as flushed:
        for index in sorted(captured):
            layer, fwd, m_back = captured[index]
            groups_per_1000 = 1000 / fwd.x_mean.shape[layer.ex]
            name = "{} {}×{}".format(index, *layer.q_w.shape[-2:])
            for kernel, call in _kernels(layer, fwd, m_back).items():
                per_group = _median_seconds(call, repeats)
                rows.append(FloorRow(name, kernel, per_group * groups_per_1000))
    return rows, flushed


def render(arch: str, inputs: str, rows: list[FloorRow], flushed: bool, threads: int) -> str:
    """The Markdown report: kernels per layer, their sum, the passes and the ratios to AdamW."""
    adamw = next(r.seconds_per_1000 for r in rows if r.kernel == "adamw")
    mp = next(r.seconds_per_1000 for r in rows if r.kernel == "mp")
    kernels = [r for r in rows if r.layer != "pass"]
    floor = sum(r.seconds_per_1000 for r in kernels)
    lines = [
        f"# The arithmetic floor of an MP pass: `{arch}`",
        "",
        f"Inputs {inputs}; float32; group size {DEFAULT_GROUP_SIZE}; PyTorch threads {threads}; "
        f"subnormals {'flushed' if flushed else 'kept'} while MP ran (AdamW: IEEE default mode). "
        "Seconds per 1,000 examples of one pass; ratios against AdamW's pass measured in the "
        "same process (`python -m harness.bench_floor`; the kernels in its docstring).",
        "",
        "| layer | kernel | s / 1k | ×AdamW | share of floor |",
        "|---|---|---:|---:|---:|",
    ]
    for r in kernels:
        lines.append(
            f"| {r.layer} | {r.kernel} | {r.seconds_per_1000:.4g} | "
            f"{r.seconds_per_1000 / adamw:.3g} | {100 * r.seconds_per_1000 / floor:.0f} % |"
        )
    by_kernel = {k: sum(r.seconds_per_1000 for r in kernels if r.kernel == k) for k in PRIMITIVES}
    lines += [
        "",
        "| | s / 1k | ×AdamW |",
        "|---|---:|---:|",
        *(f"| all layers: {k} | {v:.4g} | {v / adamw:.3g} |" for k, v in by_kernel.items()),
        f"| **floor** (sum of the kernels) | {floor:.4g} | {floor / adamw:.3g} |",
        f"| MP pass, as it runs (compiled kernels) | {mp:.4g} | {mp / adamw:.3g} |",
        f"| AdamW pass | {adamw:.4g} | 1 |",
        "",
        f"The floor is {100 * floor / mp:.0f} % of the measured pass; the other "
        f"{100 * (1 - floor / mp):.0f} % are the activations, the output layer, dispatch, "
        "allocation and the glue between the kernels.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (``python -m harness.bench_floor --help``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="mlp")
    parser.add_argument(
        "--examples", type=int, help="examples per pass (default: those of harness.bench)"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="reports", help="directory of bench_floor_<arch>.md")
    parser.add_argument(
        "--random", action="store_true", help="random inputs instead of Fashion-MNIST"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    examples = args.examples or EXAMPLES.get(args.arch, BATCH_SIZE)
    cpu = torch.device("cpu")
    if args.random:
        (x, y), inputs = random_data(args.arch, examples, torch.float32, cpu), "random"
    else:
        x, y, inputs = real_data(args.arch, examples, torch.float32, cpu)
    rows, flushed = floor_rows(args.arch, x, y, repeats=args.repeats)
    text = render(args.arch, inputs, rows, flushed, torch.get_num_threads())
    io.write_text(Path(args.out) / f"bench_floor_{args.arch}.md", text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
