"""Datasets with one interface for every method: tensors, splits, subsets and normalisation.

Every loader returns a :class:`Dataset` of tensors: images channel-first ``(N, C, H, W)`` in the
requested float dtype, classification labels ``int64`` ``(N,)`` counted from 0, regression
targets ``(N, 1)``. Pixels are scaled to ``[0, 1]`` first and then normalised with statistics of
the (subset) training set:

- ``"global"``: one scalar mean and standard deviation over all training pixels or features, as
  the official message-passing code does (``normalize_X!``, unbiased variance).
- ``"per_channel"``: per image channel, or per feature for vector inputs, as the reference
  baselines do. For CIFAR-10 they used fixed constants, mean ``(0.4914, 0.4822, 0.4465)`` and
  std ``(0.2470, 0.2435, 0.2616)``, the published per-channel statistics of the full CIFAR-10
  training set; this module always computes the statistics from the training data actually
  used, which reproduces those constants up to rounding on the full set and stays correct for
  subsets and other data sets.
- ``"none"``: pixels in ``[0, 1]``.

Files are read in their original on-disk formats by this module (IDX for MNIST and
Fashion-MNIST, the Python pickles of ``cifar-10-batches-py`` for CIFAR-10, MATLAB ``.mat`` files
for SVHN); torchvision's dataset classes are used only to download them when ``download=True``.
No pickle is executed beyond building NumPy arrays.

Modules: :mod:`~harness.data.dataset` (the container, errors, summaries, cache),
:mod:`~harness.data.normalization`, :mod:`~harness.data.sine`, :mod:`~harness.data.formats`
(on-disk readers), :mod:`~harness.data.sources` (finding and downloading files) and
:mod:`~harness.data.loading` (:func:`load_dataset`, :func:`load_ood`) and
:mod:`~harness.data.uci` (the UCI regression sets with their standard splits).

Example:
    >>> from harness.data import load_dataset
    >>> data = load_dataset("sine")
    >>> tuple(data.x_train.shape), tuple(data.x_test.shape)
    ((200, 1), (50, 1))
"""

from harness.data.dataset import (
    NORMALIZATIONS,
    DataError,
    Dataset,
    DatasetNotFoundError,
    describe,
    load_saved_dataset,
    save_dataset,
)
from harness.data.formats import read_idx
from harness.data.loading import (
    DATASETS,
    DEFAULT_OOD_NORMALIZATION,
    load_dataset,
    load_ood,
    ood_normalization_of,
)
from harness.data.normalization import (
    INPUT_ABS_LIMIT,
    apply_normalization,
    check_input_scale,
    fit_normalization,
)
from harness.data.sine import make_sine, sine_function
from harness.data.sources import DATA_ROOT_ENV, FASHION_MNIST_SYSTEM_DIRS
from harness.data.uci import UCI_SETS, load_uci, to_original_units

__all__ = [
    "DATASETS",
    "DATA_ROOT_ENV",
    "DEFAULT_OOD_NORMALIZATION",
    "FASHION_MNIST_SYSTEM_DIRS",
    "INPUT_ABS_LIMIT",
    "NORMALIZATIONS",
    "UCI_SETS",
    "DataError",
    "Dataset",
    "DatasetNotFoundError",
    "apply_normalization",
    "check_input_scale",
    "describe",
    "fit_normalization",
    "load_dataset",
    "load_ood",
    "load_uci",
    "load_saved_dataset",
    "make_sine",
    "ood_normalization_of",
    "read_idx",
    "save_dataset",
    "sine_function",
    "to_original_units",
]
