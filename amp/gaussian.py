"""Gaussian messages in natural parameters.

Every message and marginal of the method is a product of independent one-dimensional Gaussians,
stored as two equally shaped tensors:

* ``tau = mean / var`` (precision-adjusted mean; Infer.NET's ``MeanTimesPrecision``, pyro's
  ``info_vec``),
* ``rho = 1 / var`` (precision).

Two algebras act on them and are named apart:

* **density algebra** on the functions: :meth:`NatGaussian.mul` (product of densities, adds natural
  parameters) and :meth:`NatGaussian.div` (ratio, subtracts them);
* **variable transforms** on the random variable: :meth:`NatGaussian.scale` (``a * X``) and
  :meth:`NatGaussian.shift` (``X + c``).

Special cases (as in the reference implementation, ``lib/gaussian.jl``):

* ``rho == 0`` is the uniform message N(0, ∞); its mean is *defined* as 0.
* ``rho < 0`` is improper and never produced: the guardrails below keep precisions non-negative.

References:
    Sommerfeld, Helms, Herbrich. Approximate Message Passing for Bayesian Neural Networks.
    arXiv:2501.15573.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "MIN_PRECISION",
    "NatGaussian",
    "ema",
]

MIN_PRECISION = 1e-8
"""Mean-preserving precision floor ``min_ρ(g, 1e-8)`` of the reference implementation.

Applied to the input marginal of hidden fully connected layers, to every message a weight layer
sends back to its input, and to the LeakyReLU backward message, so that no variance is infinite
where a finite one is needed (``lib/gaussian.jl``, ``min_ρ``).
"""


@dataclass(frozen=True)
class NatGaussian:
    """A tensor of independent 1-D Gaussians in natural parameters.

    Attributes:
        tau: Precision-adjusted means ``mean / var``, any shape ``S``.
        rho: Precisions ``1 / var``, shape ``S``; ``0`` means uniform.
    """

    tau: Tensor
    rho: Tensor

    # ----------------------------------------------------------------------------- constructors
    @classmethod
    def from_moments(cls, mean: Tensor, var: Tensor) -> NatGaussian:
        """Build from means and (positive, possibly infinite) variances."""
        rho = 1.0 / var
        return cls(mean * rho, rho)

    @classmethod
    def from_mean_m2(cls, mean: Tensor, m2: Tensor) -> NatGaussian:
        """Build from first and second raw moments (``var = m2 - mean**2``)."""
        return cls.from_moments(mean, m2 - mean * mean)

    @classmethod
    def uniform(
        cls,
        shape: tuple[int, ...] | torch.Size,
        *,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
    ) -> NatGaussian:
        """The neutral element N(0, ∞) (``tau = rho = 0``) of the given shape."""
        zeros = torch.zeros(shape, dtype=dtype, device=device)
        return cls(zeros, zeros.clone())

    # -------------------------------------------------------------------------------- read-outs
    @property
    def mean(self) -> Tensor:
        """Means; 0 where the message is uniform."""
        # ``logical_not`` is ``rho == 0`` for floats (NaN stays NaN) and several times faster
        return torch.where(self.rho.logical_not(), 0.0, self.tau / self.rho)

    @property
    def var(self) -> Tensor:
        """Variances; ``inf`` where the message is uniform."""
        return 1.0 / self.rho

    @property
    def m2(self) -> Tensor:
        """Second raw moments ``var + mean**2``."""
        mean = self.mean
        return self.var + mean * mean

    @property
    def shape(self) -> torch.Size:
        """Shape ``S`` of the parameter tensors."""
        return self.tau.shape

    @property
    def dtype(self) -> torch.dtype:
        """Floating-point type of the parameters."""
        return self.tau.dtype

    @property
    def device(self) -> torch.device:
        """Device of the parameters."""
        return self.tau.device

    # ------------------------------------------------------------------------- density algebra
    def mul(self, other: NatGaussian) -> NatGaussian:
        """Product of densities: natural parameters add."""
        return NatGaussian(self.tau + other.tau, self.rho + other.rho)

    def div(self, other: NatGaussian) -> NatGaussian:
        """Ratio of densities: natural parameters subtract.

        The caller guarantees ``self.rho >= other.rho`` (a cavity is never improper); use
        :meth:`is_proper` to check it where it is not guaranteed by construction.
        """
        return NatGaussian(self.tau - other.tau, self.rho - other.rho)

    # ----------------------------------------------------------------------- variable transforms
    def scale(self, a: float | Tensor) -> NatGaussian:
        """Distribution of ``a * X``: ``(tau / a, rho / a**2)``; ``a`` must be non-zero."""
        return NatGaussian(self.tau / a, self.rho / (a * a))

    def shift(self, c: float | Tensor) -> NatGaussian:
        """Distribution of ``X + c``: ``(tau + c * rho, rho)``."""
        return NatGaussian(self.tau + c * self.rho, self.rho)

    # ------------------------------------------------------------------------------ guardrails
    def floor_precision(self, min_rho: float = MIN_PRECISION) -> NatGaussian:
        """Raise every precision to at least ``min_rho`` while keeping the mean (``min_ρ``).

        A uniform message (mean 0 by definition) becomes N(0, 1 / min_rho).
        """
        rho = self.rho.clamp_min(min_rho)
        return NatGaussian(self.mean * rho, rho)

    def scale_precision(self, factor: Tensor | float) -> NatGaussian:
        """Multiply every precision by ``factor`` while keeping the mean (``scale_ρ``)."""
        return NatGaussian(self.tau * factor, self.rho * factor)

    # ----------------------------------------------------------------------- tensor utilities
    def __getitem__(self, index: object) -> NatGaussian:
        return NatGaussian(self.tau[index], self.rho[index])

    def reshape(self, *shape: int) -> NatGaussian:
        """Reshape both parameter tensors."""
        return NatGaussian(self.tau.reshape(*shape), self.rho.reshape(*shape))

    def expand(self, *shape: int) -> NatGaussian:
        """Broadcast to a larger shape (a copy, so that in-place updates stay independent)."""
        return NatGaussian(self.tau.expand(*shape).clone(), self.rho.expand(*shape).clone())

    def to(self, *args: object, **kwargs: object) -> NatGaussian:
        """Move or cast both parameter tensors (arguments of :meth:`torch.Tensor.to`)."""
        return NatGaussian(self.tau.to(*args, **kwargs), self.rho.to(*args, **kwargs))

    def clone(self) -> NatGaussian:
        """Copy both parameter tensors."""
        return NatGaussian(self.tau.clone(), self.rho.clone())

    def sum(self, dim: int | tuple[int, ...], keepdim: bool = False) -> NatGaussian:
        """Product of the densities along ``dim`` (natural parameters sum)."""
        return NatGaussian(self.tau.sum(dim, keepdim=keepdim), self.rho.sum(dim, keepdim=keepdim))

    def unsqueeze(self, dim: int) -> NatGaussian:
        """Insert an axis of size one."""
        return NatGaussian(self.tau.unsqueeze(dim), self.rho.unsqueeze(dim))

    def sum_to(self, shape: tuple[int, ...] | torch.Size) -> NatGaussian:
        """Product of the densities over the dimensions broadcast to reach ``shape``."""
        return NatGaussian(self.tau.sum_to_size(shape), self.rho.sum_to_size(shape))

    def take(self, dim: int, index: Tensor | int) -> NatGaussian:
        """Entries at ``index`` along ``dim`` (a tensor keeps the dimension, an int drops it)."""
        if isinstance(index, int):
            return NatGaussian(self.tau.select(dim, index), self.rho.select(dim, index))
        return NatGaussian(self.tau.index_select(dim, index), self.rho.index_select(dim, index))

    def put_(self, dim: int, index: Tensor | int, value: NatGaussian) -> None:
        """Overwrite the entries at ``index`` along ``dim`` in place (inverse of :meth:`take`)."""
        if isinstance(index, int):
            self.tau.select(dim, index).copy_(value.tau)
            self.rho.select(dim, index).copy_(value.rho)
        else:
            self.tau.index_copy_(dim, index, value.tau)
            self.rho.index_copy_(dim, index, value.rho)

    def add_(self, other: NatGaussian) -> None:
        """Multiply ``other`` into this density in place (natural parameters add)."""
        self.tau.add_(other.tau)
        self.rho.add_(other.rho)

    @staticmethod
    def cat(parts: list[NatGaussian], dim: int = 0) -> NatGaussian:
        """Concatenate along ``dim``."""
        return NatGaussian(
            torch.cat([p.tau for p in parts], dim), torch.cat([p.rho for p in parts], dim)
        )

    # --------------------------------------------------------------------------------- checks
    def is_uniform(self) -> Tensor:
        """Boolean mask of uniform entries (``rho == 0``)."""
        return self.rho == 0

    def is_proper(self) -> Tensor:
        """Boolean mask of entries with non-negative precision and finite parameters."""
        return (self.rho >= 0) & torch.isfinite(self.rho) & torch.isfinite(self.tau)

    def is_finite(self) -> bool:
        """Whether all parameters are finite (no NaN, no infinity)."""
        return bool(torch.isfinite(self.tau).all() and torch.isfinite(self.rho).all())

    def max_abs_diff(self, other: NatGaussian) -> float:
        """Largest absolute difference of the natural parameters (for tests)."""
        return max(
            float((self.tau - other.tau).abs().max()), float((self.rho - other.rho).abs().max())
        )


def ema(old: NatGaussian, new: NatGaussian, beta: float) -> NatGaussian:
    """Exponential moving average in natural parameters: ``(1 - beta) * old + beta * new``.

    Used to damp the stored batch messages between visits of the same batch (reference:
    ``EMA`` in ``lib/gaussian.jl``). ``beta = 1`` keeps only the new message.
    """
    return NatGaussian(
        torch.lerp(old.tau, new.tau, beta),
        torch.lerp(old.rho, new.rho, beta),
    )
