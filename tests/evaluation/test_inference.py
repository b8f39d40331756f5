import pytest
import torch

import swapout
from swapout.layers import SwapoutJoin


def _model(method="swapout"):
    model = swapout.create_model("resnet_v2_ours", depth=8, num_classes=5, method=method, theta1=0.6, theta2=0.7)
    # non-trivial running statistics
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(16, 3, 32, 32))
    return model.eval()


def test_inference_switch_is_independent_of_eval():
    model = _model()
    x = torch.randn(4, 3, 32, 32)
    assert torch.equal(model(x), model(x))  # eval + deterministic: no masks
    swapout.set_inference(model, "stochastic")
    assert not model.training
    assert not torch.equal(model(x), model(x))
    bn = model.blocks[0].bn1
    mean = bn.running_mean.clone()
    model(x)
    assert torch.equal(bn.running_mean, mean)  # BatchNorm still uses running statistics
    model.train()
    assert all(j.inference == "stochastic" for j in model.modules() if isinstance(j, SwapoutJoin))


def test_context_manager_restores_modes():
    model = _model()
    with swapout.using_inference(model, "stochastic"):
        assert all(j.inference == "stochastic" for j in model.modules() if isinstance(j, SwapoutJoin))
    assert all(j.inference == "deterministic" for j in model.modules() if isinstance(j, SwapoutJoin))
    with pytest.raises(RuntimeError):
        with swapout.using_inference(model, "stochastic"):
            raise RuntimeError
    assert all(j.inference == "deterministic" for j in model.modules() if isinstance(j, SwapoutJoin))


@pytest.mark.parametrize("max_batch", [None, 5, 8, 64])
def test_batched_predict_equals_mean_of_sequential_passes(record_masks, max_batch):
    model, x, n = _model(), torch.randn(4, 3, 32, 32), 6
    joins = [m for m in model.modules() if isinstance(m, SwapoutJoin)]
    rec = record_masks()
    probs = swapout.predict(model, x, samples=n, max_batch=max_batch)
    # masks come two per join per forward call, in layer order; glue the chunks back together
    per_call = 2 * len(joins)
    calls = [rec.masks[i:i + per_call] for i in range(0, len(rec.masks), per_call)]
    masks = [torch.cat([c[k] for c in calls]) for k in range(per_call)]
    assert masks[0].shape[0] == n * x.shape[0]
    replay = [m[s * 4:(s + 1) * 4] for s in range(n) for m in masks]
    rec2 = record_masks(replay)
    with swapout.using_inference(model, "stochastic"), torch.no_grad():
        sequential = torch.stack([model(x).softmax(-1) for _ in range(n)]).mean(0)
    assert not rec2.replay
    torch.testing.assert_close(probs, sequential, rtol=1e-5, atol=1e-6)
    assert torch.allclose(probs.sum(-1), torch.ones(4))


def test_predict_restores_training_mode_and_is_stochastic():
    model = _model().train()
    x = torch.randn(3, 3, 32, 32)
    a, b = swapout.predict(model, x, samples=3), swapout.predict(model, x, samples=3)
    assert model.training and not torch.equal(a, b)
    det = swapout.predict(model, x, samples=0)
    model.eval()
    torch.testing.assert_close(det, model(x).softmax(-1))
    # each module gets its own mode back: a BatchNorm frozen while the rest fine-tunes stays frozen
    model.train()
    frozen = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)).eval()
    swapout.predict(model, x, samples=2)
    assert model.training and not frozen.training

    class Frozen(torch.nn.Sequential):  # a train() override with a side effect: it runs on the way out too
        calls = []

        def train(self, mode=True):
            self.calls.append(mode)
            return super().train(mode)

    wrapped = Frozen(_model()).train()
    swapout.predict(wrapped, x, samples=2)
    assert wrapped.calls == [True, False, True] and wrapped.training


@pytest.mark.parametrize("kwargs, message", [
    (dict(samples=-1), "samples must be"), (dict(samples=2.5), "samples must be"), (dict(max_batch=0), "max_batch"),
    (dict(model=None), "model must be a torch.nn.Module, got NoneType"),
    (dict(x=None), r"x must be a batch of images, a tensor \(B, ...\), got NoneType"),
    (dict(model=torch.nn.Conv2d(3, 4, 1)), r"logits of shape \(B, classes\).*returned \(4, 4, 32, 32\)")])
def test_predict_bad_arguments(kwargs, message):
    args = {"model": _model(), "x": torch.randn(2, 3, 32, 32), "samples": 2, **kwargs}
    with pytest.raises(ValueError, match=message):
        swapout.predict(**args)


def test_bad_inference_mode():
    with pytest.raises(ValueError, match="deterministic"):
        swapout.set_inference(_model(), "sampled")
    with pytest.raises(ValueError, match="model must be a torch.nn.Module, got NoneType"):
        swapout.set_inference(None, "stochastic")


@pytest.mark.parametrize("max_batch", [None, 20, 1])
def test_stochastic_depth_passes_in_one_call_are_independent(max_batch):
    # One Bernoulli draw per block and pass: two passes of the 9-block net agree on every block with
    # probability prod(t^2 + (1-t)^2) over the survival probabilities t, 0.023 for Linear(1, 0.5).
    model = swapout.create_model("resnet_v2_ours", depth=20, num_classes=10, method="stochastic_depth").eval()
    thetas = [j.thetas[1] for j in model.modules() if isinstance(j, SwapoutJoin)]
    chance = torch.tensor([t * t + (1 - t) ** 2 for t in thetas]).prod().item()
    probs = swapout.stochastic_passes(model, torch.randn(2, 3, 32, 32), samples=30, max_batch=max_batch)
    same = [torch.equal(probs[s], probs[t]) for s in range(30) for t in range(s + 1, 30)]
    # 435 pairs; one draw shared by a whole forward call would make every pair within a call identical
    assert 0.01 < chance < 0.05 and sum(same) / len(same) < chance + 0.1
