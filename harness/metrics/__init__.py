"""Evaluation metrics shared by every method, computed in float64 from predictive distributions.

Classification metrics take predictive probabilities ``probs`` of shape ``(N, K)`` (for a
Bayesian model: the Bayesian model average of the per-sample probabilities, never an average of
per-sample metrics) and integer labels ``(N,)`` in ``0 .. K-1``. Regression metrics take a
Gaussian predictive mean and variance of shape ``(N,)`` or ``(N, D)`` and targets of the same
shape. Every function accepts numpy arrays or torch tensors (any device) and returns Python
floats. Invalid input raises a ``ValueError`` that names the argument, the problem and the fix.

Two ECE conventions are reported side by side, because their values are not comparable:
:func:`ece_top_label` (equal-width bins on the top-label confidence, Guo et al. 2017) and
:func:`ece_median_variance` (the paper's estimator, CalibrationErrors.jl
``ECE(MedianVarianceBinning(20), SqEuclidean())`` on the full probability vector).

Modules: :mod:`~harness.metrics.classification` (accuracy, NLL, Brier, the metrics dict),
:mod:`~harness.metrics.calibration` (ECE variants), :mod:`~harness.metrics.ood` (detection
scores), :mod:`~harness.metrics.selective` (accuracy–rejection, AURC),
:mod:`~harness.metrics.regression`, and :mod:`~harness.metrics.checks` (input checks).
Every public name is importable from ``harness.metrics`` itself.
"""

from harness.metrics.calibration import (
    MV_MIN_SIZE,
    TOP_LABEL_BINS,
    ece_median_variance,
    ece_top_label,
    median_variance_partition,
)
from harness.metrics.checks import PROB_SUM_TOL
from harness.metrics.classification import (
    NLL_FLOOR,
    accuracy,
    brier,
    classification_metrics,
    mean_confidence,
    nll,
    summary_metrics,
    top_k_accuracy,
)
from harness.metrics.ood import (
    FPR_TPR_LEVEL,
    OOD_SCORES,
    auroc,
    average_precision,
    detection_scores,
    fpr_at_tpr,
    ood_scores,
    predictive_entropy,
)
from harness.metrics.regression import (
    crps_gaussian,
    gaussian_nll,
    mean_interval_width,
    picp,
    regression_metrics,
    rmse,
)
from harness.metrics.selective import (
    REJECTION_GRID,
    REJECTION_LEVELS,
    accuracy_rejection_area,
    accuracy_rejection_curve,
    aurc,
    excess_aurc,
    retained_accuracy,
    selective_metrics,
)

__all__ = [
    "FPR_TPR_LEVEL",
    "MV_MIN_SIZE",
    "NLL_FLOOR",
    "OOD_SCORES",
    "PROB_SUM_TOL",
    "REJECTION_GRID",
    "REJECTION_LEVELS",
    "TOP_LABEL_BINS",
    "accuracy",
    "accuracy_rejection_area",
    "accuracy_rejection_curve",
    "auroc",
    "aurc",
    "average_precision",
    "brier",
    "classification_metrics",
    "crps_gaussian",
    "detection_scores",
    "ece_median_variance",
    "ece_top_label",
    "excess_aurc",
    "fpr_at_tpr",
    "gaussian_nll",
    "mean_interval_width",
    "mean_confidence",
    "median_variance_partition",
    "nll",
    "ood_scores",
    "picp",
    "predictive_entropy",
    "regression_metrics",
    "retained_accuracy",
    "rmse",
    "selective_metrics",
    "summary_metrics",
    "top_k_accuracy",
]
