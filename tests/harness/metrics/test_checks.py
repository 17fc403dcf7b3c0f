"""Invalid inputs of every metric raise a ValueError naming the problem and the fix."""

from __future__ import annotations

import numpy as np
import pytest

from harness import metrics as M

P = np.array([[0.2, 0.8], [0.6, 0.4]])
Y = np.array([1, 0])


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: M.accuracy(P[0], Y), r"probs must have 2 dimensions"),
        (lambda: M.accuracy(np.ones((2, 1)), Y), r"at least 2 classes"),
        (lambda: M.accuracy(np.array([[np.nan, 1.0], [0.5, 0.5]]), Y), r"NaN or infinite"),
        (lambda: M.accuracy(np.array([[np.inf, 1.0], [0.5, 0.5]]), Y), r"NaN or infinite"),
        (lambda: M.nll(np.array([[-0.1, 1.1], [0.5, 0.5]]), Y), r"negative entries.*softmax"),
        (lambda: M.brier(P * 1.01, Y), r"sum to 1.*divide each row by its sum"),
        (lambda: M.nll(P, np.array([1, 2])), r"labels must lie in 0\.\.1"),
        (lambda: M.nll(P, np.array([-1, 0])), r"labels must lie in"),
        (lambda: M.nll(P, np.array([1.0, 0.0])), r"labels must be integers"),
        (lambda: M.nll(P, np.array([1, 0, 1])), r"labels must have shape \(2,\)"),
        (lambda: M.nll(np.zeros((0, 2)), np.array([], dtype=int)), r"probs is empty"),
        (lambda: M.top_k_accuracy(P, Y, 3), r"k must be in 1\.\.2"),
        (lambda: M.ece_top_label(P, Y, 0), r"n_bins must be a positive"),
        (lambda: M.ece_median_variance(P, Y, 20), r"at least min_size=20 examples"),
        (lambda: M.ood_scores(P, np.full((3, 3), 1 / 3)), r"probs_out has 3"),
        (lambda: M.fpr_at_tpr([0.0], [1.0], 0.0), r"tpr must be in"),
        (lambda: M.auroc([], [1.0]), r"scores_neg is empty"),
        (lambda: M.rmse(np.zeros(3), np.zeros(4)), r"targets shape \(4,\) differs"),
        (lambda: M.gaussian_nll(np.zeros(3), np.zeros(3), np.zeros(3)), r"var must be positive"),
        (lambda: M.picp(np.zeros(2), -np.ones(2), np.zeros(2)), r"var must be positive"),
        (lambda: M.crps_gaussian(np.zeros(2), np.ones(3), np.zeros(2)), r"var shape \(3,\)"),
        (lambda: M.rmse(np.array([np.nan, 0.0]), np.zeros(2)), r"mean contains 1 NaN"),
        (lambda: M.rmse(np.zeros((2, 2, 2)), np.zeros((2, 2, 2))), r"mean must have 1 or 2"),
    ],
)
def test_invalid_inputs_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()
