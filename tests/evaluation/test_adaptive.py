"""Adaptive stochastic inference: the stopping rule's error rate on synthetic passes, and batching."""

import math

import pytest
import torch
from torch import nn

from swapout.evaluation.adaptive import adaptive_from_passes, adaptive_predict, min_passes

pytestmark = pytest.mark.usefixtures("one_thread")


def _two_point(q: float, n: int, passes: int = 30, seed: int = 0) -> torch.Tensor:
    """Passes (passes, n, 2): each pass puts 0.98 on class 0 with probability q, else on class 1."""
    g = torch.Generator().manual_seed(seed)
    on_zero = torch.rand(passes, n, generator=g) < q
    return torch.nn.functional.one_hot((~on_zero).long(), 2).double() * 0.96 + 0.02


@pytest.mark.parametrize("delta", [0.3, 0.1])
def test_early_stops_on_a_wrong_answer_are_at_most_delta(delta):
    # Class 0 has mean probability 0.49 * 0.98 + 0.51 * 0.02 < 1/2 and class 1 is the infinite-pass
    # answer. Among images whose first pass names class 0, the rule may stop on class 0 with
    # probability at most delta; this two-point case comes close to the bound (about 0.85 delta).
    probs = _two_point(0.49, 20000)
    out = adaptive_from_passes(probs, delta=delta)
    named_zero = probs[0].argmax(1) == 0
    wrong = (out["settled"] & (out["prediction"] == 0))
    rate = wrong[named_zero].double().mean().item()
    n = int(named_zero.sum())
    assert rate <= delta + 3 * math.sqrt(delta * (1 - delta) / n)  # 3 standard errors of a proportion
    assert rate > delta / 2  # the case is hard: a rule that never stopped would pass the bound trivially
    assert wrong.double().mean().item() <= delta  # over all images too


@pytest.mark.parametrize("delta, stop", [(0.3, 4), (0.25, 5)])
def test_wealth_by_hand(delta, stop):
    # candidate's probability per pass 0.9 (names it), 0.8, 0.7, 0.9, 0.9; each bet is capped at 1.9
    # (the plug-in mean(Y)/mean(Y^2) of the passes before is 2.5, 2.8, 3.1, 2.9), so the wealth is
    # 1.57 after pass 2, 1.57 * 1.38 = 2.17 after pass 3, 3.81 after pass 4 and 6.71 after pass 5:
    # past 1/0.3 = 3.33 at pass 4, past 1/0.25 = 4 at pass 5.
    p = torch.tensor([0.9, 0.8, 0.7, 0.9, 0.9, 0.9], dtype=torch.float64)
    probs = torch.stack([p, 1 - p], -1).view(6, 1, 2)
    out = adaptive_from_passes(probs, delta=delta, round_size=1)
    assert out["passes"].item() == stop and out["settled"].item() and out["prediction"].item() == 0


def test_easy_images_settle_at_the_fewest_passes_and_hard_ones_run_to_the_maximum():
    easy = torch.full((30, 50, 10), 0.05 / 9, dtype=torch.float64)
    easy[:, :, 3] = 0.95
    out = adaptive_from_passes(easy, delta=0.05)
    assert min_passes(0.05) == 6 and out["passes"].tolist() == [6] * 50 and out["settled"].all()
    assert (out["prediction"] == 3).all()
    tied = adaptive_from_passes(_two_point(0.5, 50, seed=1), delta=0.01, max_passes=20)
    assert tied["passes"].max() == 20 and not tied["settled"].all()
    assert torch.allclose(tied["probs"].sum(1), torch.ones(50, dtype=torch.float64))


class _Fixed(nn.Module):
    """The same logits for an image at every pass (row r of x holds its image's index in every pixel);
    records the rows of every forward call."""

    def __init__(self, logits):
        super().__init__()
        self.logits, self.calls = logits, []

    def forward(self, x):
        self.calls.append(len(x))
        return self.logits[x[:, 0, 0, 0].long()]


def test_pending_images_are_sampled_together_and_stop_at_the_maximum():
    logits = torch.tensor([[5.0, 0.0], [0.0, 5.0], [4.0, 0.0], [0.1, -0.1]])  # the last: p = 0.55, never settles
    model = _Fixed(logits)
    x = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 3, 2, 2)
    out = adaptive_predict(model, x, delta=0.05, max_passes=12)
    assert out["passes"].tolist() == [6, 6, 6, 12] and out["settled"].tolist() == [True, True, True, False]
    assert out["prediction"].tolist() == [0, 1, 0, 0]
    # one call of 6 passes over 4 images, then rounds of 2 passes over the one image left
    assert model.calls == [24, 2, 2, 2]


@pytest.mark.parametrize("kwargs", [dict(delta=0.0), dict(delta=1.0), dict(max_passes=0), dict(round_size=0),
                                    dict(max_passes=31), dict(max_passes=2.5), dict(round_size=True)])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        adaptive_from_passes(torch.full((30, 2, 2), 0.5), **kwargs)
