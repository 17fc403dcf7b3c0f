"""Reliability tests run PyTorch on one thread, like the pipeline's jobs (and share the CPU)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
