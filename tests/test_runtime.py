import pytest
import torch

from amp import specs
from amp.network import Network
from amp.runtime import denormals_flushed, flush_denormal
from amp.trainer import Trainer
from harness import metrics
from harness.data import DatasetNotFoundError, load_dataset

TINY = torch.finfo(torch.float32).tiny


def _supported() -> bool:
    previous = denormals_flushed()
    supported = torch.set_flush_denormal(True)
    torch.set_flush_denormal(previous)
    return supported


needs_ftz = pytest.mark.skipif(not _supported(), reason="this CPU cannot flush subnormals")


@pytest.fixture(autouse=True)
def _restore_mode():
    """Whatever a test does, the next one starts with subnormals kept (the IEEE default)."""
    yield
    torch.set_flush_denormal(False)


@needs_ftz
def test_probe_reads_the_mode_torch_sets():
    torch.set_flush_denormal(True)
    assert denormals_flushed()
    assert float(torch.tensor([TINY]) / 4) == 0.0
    torch.set_flush_denormal(False)
    assert not denormals_flushed()
    assert float(torch.tensor([TINY]) / 4) == pytest.approx(TINY / 4, rel=1e-6)


@needs_ftz
@pytest.mark.parametrize("before", [False, True])
@pytest.mark.parametrize("inside", [False, True])
def test_context_sets_and_restores_the_mode(before, inside):
    torch.set_flush_denormal(before)
    with flush_denormal(inside) as flushed:
        assert flushed is inside
        assert denormals_flushed() is inside
    assert denormals_flushed() is before


@needs_ftz
def test_context_restores_the_mode_after_an_exception():
    with pytest.raises(KeyError), flush_denormal(True):
        raise KeyError("boom")
    assert not denormals_flushed()


def test_context_leaves_the_cpu_alone_for_other_devices():
    with flush_denormal(True, device="cuda:0") as flushed:
        assert flushed is False
        assert not denormals_flushed()


def _classifier(dtype=torch.float32):
    layers = [specs.Flatten(), specs.Linear(32), specs.LeakyReLU(), specs.Linear(10)]
    return Network([*layers, specs.Argmax()], (1, 28, 28), seed=0, dtype=dtype)


@needs_ftz
@pytest.mark.parametrize("switch", [True, False])
def test_fit_and_predict_flush_inside_and_restore_after(switch):
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 1, 28, 28, generator=gen), torch.randint(0, 10, (16,), generator=gen)
    seen = []
    trainer = Trainer(_classifier(), 8, flush_denormal=switch)
    trainer.fit(x, y, callback=lambda t: seen.append(denormals_flushed()))
    assert seen == [switch]
    assert not denormals_flushed()
    torch.set_flush_denormal(True)  # a caller's own mode survives too
    trainer.fit(x, y)
    trainer.net.predict(x, flush_denormal=False)
    assert denormals_flushed()


@needs_ftz
def test_fit_restores_the_mode_after_an_exception():
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 1, 28, 28, generator=gen), torch.randint(0, 10, (16,), generator=gen)

    def fail(trainer):
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        Trainer(_classifier(), 8).fit(x, y, callback=fail)
    assert not denormals_flushed()


@needs_ftz
def test_flushing_leaves_accuracy_and_nll_unchanged_on_real_data():
    """float32 MP on Fashion-MNIST: the same predictions up to float32 noise, flushed or not."""
    try:
        data = load_dataset("fashion_mnist", subset=256, test_subset=256, dtype=torch.float32)
    except DatasetNotFoundError:
        pytest.skip("Fashion-MNIST is not installed (make data)")
    scores = {}
    for switch in (False, True):
        net = _classifier()
        Trainer(net, 128, flush_denormal=switch).fit(data.x_train, data.y_train)
        probs = net.predict(data.x_test, flush_denormal=switch)
        scores[switch] = (
            probs,
            metrics.accuracy(probs, data.y_test),
            metrics.nll(probs, data.y_test),
        )
    (p_keep, acc_keep, nll_keep), (p_flush, acc_flush, nll_flush) = scores[False], scores[True]
    assert acc_keep > 0.4  # it learned something, so the comparison means something
    assert abs(acc_flush - acc_keep) <= 2 / 256  # at most two borderline test images flip
    assert nll_flush == pytest.approx(nll_keep, rel=1e-3)
    assert torch.allclose(p_flush, p_keep, atol=1e-3)


def test_compile_options_reach_the_compiler_and_leave_the_function_unchanged(monkeypatch):
    from amp import runtime
    from amp.factors import linear_fused

    seen = []

    def fake_compile(fn, **kwargs):
        seen.append(kwargs)
        return fn

    @runtime.compile_options(realize_reads_threshold=7)
    def double(x):
        return 2 * x

    monkeypatch.setattr(runtime.torch, "compile", fake_compile)
    monkeypatch.setattr(runtime, "_kernels", {})
    assert double(3) == 6
    assert runtime.call_compiled(double, 4) == 8
    assert seen == [{"dynamic": True, "options": {"realize_reads_threshold": 7}}]
    assert runtime._options[linear_fused.messages] == {
        "realize_reads_threshold": linear_fused.RECOMPUTE_READS
    }
