"""Calibration, temperature scaling, entropy, mutual information and OOD metrics against hand-computed values."""

import math

import pytest
import torch

from swapout.evaluation.plots import plot_reliability
from swapout.evaluation.uncertainty import (
    calibration_metrics,
    cross_fit_temperature,
    entropy,
    fit_temperature,
    mutual_information,
    ood_metrics,
    probabilities,
    reliability_bins,
)
from swapout.evaluation.uncertainty_report import uncertainty_report

pytestmark = pytest.mark.usefixtures("one_thread")


# Four images, three classes; confidences 0.7, 0.62, 0.5, 0.9 fall in four different bins of 15.
PROBS = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.62, 0.28], [0.25, 0.25, 0.5], [0.9, 0.05, 0.05]], dtype=torch.float64)
LABELS = torch.tensor([0, 2, 2, 0])


def test_metrics_match_hand_computed_values():
    m = calibration_metrics(PROBS, LABELS)
    assert m["error"] == pytest.approx(25.0)                                        # image 2 is wrong
    assert m["nll"] == pytest.approx(-(math.log(0.7) + math.log(0.28) + math.log(0.5) + math.log(0.9)) / 4)
    assert m["brier"] == pytest.approx((0.14 + 0.9128 + 0.375 + 0.015) / 4)         # squared distances to one-hot
    assert m["ece"] == pytest.approx(100 * (0.3 + 0.62 + 0.5 + 0.1) / 4, abs=1e-4)  # one image per bin


def test_ece_averages_within_a_bin():
    # two more images in the top bin [14/15, 1): confidences 0.95 (right) and 0.97 (wrong): |0.5 - 0.96|
    probs = torch.cat([PROBS, torch.tensor([[0.95, 0.03, 0.02], [0.02, 0.97, 0.01]], dtype=torch.float64)])
    labels = torch.cat([LABELS, torch.tensor([0, 0])])
    expected = (0.3 + 0.62 + 0.5 + 0.1 + 2 * 0.46) / 6
    assert calibration_metrics(probs, labels)["ece"] == pytest.approx(100 * expected, abs=1e-4)
    bins = reliability_bins(probs, labels)
    assert bins["count"][14] == 2 and bins["accuracy"][14] == pytest.approx(0.5)
    assert bins["confidence"][14] == pytest.approx(0.96) and sum(bins["count"]) == 6


def test_reliability_bins_give_torchmetrics_ece():
    g = torch.Generator().manual_seed(0)
    probs = (3 * torch.randn(2000, 10, generator=g)).softmax(-1).double()
    labels = torch.randint(0, 10, (2000,), generator=g)
    bins = reliability_bins(probs, labels)
    n = torch.tensor(bins["count"], dtype=torch.float64)
    gap = (torch.tensor(bins["accuracy"]) - torch.tensor(bins["confidence"])).abs()
    assert 100 * (n / n.sum() * gap).sum().item() == pytest.approx(bins["ece"], abs=1e-3)


def test_entropy_and_mutual_information():
    passes = torch.tensor([[[1.0, 0.0], [0.5, 0.5]], [[0.0, 1.0], [0.5, 0.5]]])  # (2 passes, 2 images, 2 classes)
    assert entropy(passes.mean(0)).tolist() == pytest.approx([math.log(2), math.log(2)])
    # image 0: the passes disagree completely; image 1: they agree on an uncertain answer
    assert mutual_information(passes).tolist() == pytest.approx([math.log(2), 0.0])
    assert entropy(torch.tensor([1.0, 0.0, 0.0])).item() == 0.0


def test_ood_metrics_match_hand_computed_values():
    m = ood_metrics(torch.tensor([0.9, 0.8, 0.3]), torch.tensor([0.85, 0.1]))
    assert m["auroc"] == pytest.approx(100 * 4 / 6)  # 4 of the 6 (in, out) pairs ordered correctly
    assert m["fpr95"] == pytest.approx(50.0)         # keeping all 3 in-distribution images accepts 0.85
    assert ood_metrics(torch.tensor([-5.0]), torch.tensor([-5.0]))["auroc"] == pytest.approx(50.0)
    # scores far outside [0, 1] keep their order (no squashing into ties)
    assert ood_metrics(torch.tensor([-1e-9, -2e-9]), torch.tensor([-3e-9]))["auroc"] == pytest.approx(100.0)


@pytest.mark.parametrize("passes", [0, 4])
def test_temperature_is_recovered(passes):
    # labels drawn from softmax(z / 2): the fitted temperature must be close to 2. With 5,000 images its
    # spread over seeds is about 0.03 (0.05 for each half), so the tolerances are 3 to 5 of those.
    g = torch.Generator().manual_seed(1)
    shape = (passes, 5000, 5) if passes else (5000, 5)
    z = 3 * torch.randn(shape, generator=g)
    labels = torch.multinomial(probabilities(z, 2.0).float(), 1, generator=g).squeeze(1)
    t = fit_temperature(z, labels)
    assert t == pytest.approx(2.0, abs=0.1)
    nll = [calibration_metrics(probabilities(z, temperature), labels)["nll"] for temperature in (t, 1.0)]
    assert nll[0] <= nll[1]
    fold, temps = cross_fit_temperature(z, labels, folds=2)
    assert (fold == 0).sum() == 2500 and all(abs(x - 2.0) < 0.25 for x in temps)


def test_report_rows_and_reliability_png(tmp_path):
    from PIL import Image

    g = torch.Generator().manual_seed(2)
    logits = 4 * torch.randn(5, 400, 10, generator=g)  # overconfident: temperature scaling must help
    labels = torch.multinomial(probabilities(logits, 4.0).float(), 1, generator=g).squeeze(1)
    test = {"labels": labels, "deterministic": logits.mean(0), "passes": logits}
    ood = {"labels": labels, "deterministic": torch.randn(400, 10, generator=g), "passes": torch.randn(5, 400, 10)}
    report = uncertainty_report(test, ood)
    rows = report["rows"]
    assert set(rows) == {"deterministic", "deterministic+T", "stochastic", "stochastic+T"}
    assert rows["stochastic+T"]["nll"] < rows["stochastic"]["nll"] and len(rows["stochastic+T"]["temperature"]) == 2
    assert "mutual_information" in rows["stochastic"]["ood"]
    assert "mutual_information" not in rows["deterministic"]["ood"]
    assert rows["stochastic"]["mean_mutual_information"] > 0 and report["per_image"]["entropy"].shape == (400,)
    plot_reliability([{"label": k, **v} for k, v in report["reliability"].items()], tmp_path / "r.png", "title")
    with Image.open(tmp_path / "r.png") as png:
        assert png.size == (1280, 360) and png.info.get("Software", "").startswith("Matplotlib")


@pytest.mark.parametrize("bad", [lambda: calibration_metrics(PROBS, LABELS[:3]), lambda: probabilities(PROBS, 0.0),
                                 lambda: ood_metrics(torch.tensor([]), torch.tensor([1.0])),
                                 lambda: mutual_information(PROBS), lambda: cross_fit_temperature(PROBS, LABELS, 1)])
def test_bad_arguments(bad):
    with pytest.raises(ValueError):
        bad()
