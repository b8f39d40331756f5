"""Uncertainty under dataset shift: metrics on a synthetic shift with a known answer, intervals, figures that depend
on the seed only, resuming from the cache (never from a stale one), and ``swapout eval --shift`` (its files, and one
line with exit 2 for bad input)."""

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from swapout import evaluate_shift
from swapout.cli.main import main
from swapout.data import files as data
from swapout.evaluation.shift import bootstrap_means, shift_table, wilson_interval
from swapout.layers import Swapout
from swapout.runs.config import TrainConfig
from swapout.runs.experiment import build_model
from swapout.runs.rundir import RunDir

needs_data = pytest.mark.needs_data  # skipped without CIFAR-10: see the conftest.py at the top

P0 = 0.9  # the constant model's probability of class 0


class Constant(nn.Module):
    """Logits (a, 0, ..., 0) whatever the image: probability P0 for class 0, (1 - P0) / 9 for each other class.
    A swapout join of zeros gives it random masks that change nothing, so stochastic passes equal deterministic."""

    def __init__(self, masks=True):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(math.log(9 * P0 / (1 - P0))), requires_grad=False)
        self.join = Swapout(0.5, 0.5) if masks else None
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        z = torch.zeros(len(x), 10)
        z[:, 0] = self.a
        return z if self.join is None else z + self.join(torch.zeros_like(z), torch.zeros_like(z))


class Tiny(nn.Module):
    """Logits from the mean colour of each image quadrant, through a swapout join whose masks matter."""

    def __init__(self):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.w = nn.Parameter(4 * torch.randn(2, 12, 10, generator=gen), requires_grad=False)
        self.join = Swapout(0.5, 0.5)

    def forward(self, x):
        z = nn.functional.adaptive_avg_pool2d(x, 2).flatten(1)
        return self.join(z @ self.w[0], z @ self.w[1])


def _labelled(n, seed):
    """``n`` random images labelled by :class:`Tiny`'s deterministic answer, a third of the labels replaced at
    random: a model with something to calibrate."""
    images, _ = _set(n, 0.5, seed)
    x = (torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255 - torch.tensor(data.MEAN["cifar10"]).view(3, 1, 1)
         ) / torch.tensor(data.STD["cifar10"]).view(3, 1, 1)
    z = nn.functional.adaptive_avg_pool2d(x, 2).flatten(1)
    tiny = Tiny()
    labels = (0.5 * (z @ tiny.w[0] + z @ tiny.w[1])).argmax(1).numpy()
    rng = np.random.default_rng(seed)
    flip = rng.random(n) < 1 / 3
    return images, np.where(flip, rng.integers(0, 10, n), labels)


def _set(n, share0, seed=0):
    """``n`` random images; labels: class 0 for ``share0`` of them, the others spread over classes 1-9."""
    rng = np.random.default_rng(seed)
    k = int(round(n * share0))
    labels = np.concatenate([np.zeros(k, dtype=np.int64), 1 + np.arange(n - k) % 9])
    return rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8), labels


def _nll(p0, q):
    return -(q * math.log(p0) + (1 - q) * math.log((1 - p0) / 9))


def test_a_label_shift_with_a_known_answer(tmp_path, monkeypatch):
    """The model predicts class 0 with confidence 0.9 everywhere; 80% of the held-out images are class 0, so the
    fitted temperature brings the confidence to 0.8; 60% of the evaluated ones are: every corrupted set then
    has error 40%, ECE |0.9 - 0.6| = 30 points without the temperature and |0.8 - 0.6| = 20 with it."""
    monkeypatch.setenv("SWAPOUT_CACHE", str(tmp_path))
    images, labels = _set(50, 0.6)
    result = evaluate_shift(Constant(), images, labels, corruptions=["contrast", "gaussian_noise"], severities=[1, 5],
                            samples=3, calibration=_set(50, 0.8, seed=1), resamples=5, progress=False)
    for rows in [result["clean"]] + [result["corrupted"][c][s] for c in ("contrast", "gaussian_noise")
                                     for s in ("1", "5")]:
        for mode, conf in (("deterministic", P0), ("stochastic", P0), ("deterministic+T", 0.8), ("stochastic+T", 0.8)):
            r = rows[mode]
            assert r["error"] == pytest.approx(40) and r["ece"] == pytest.approx(100 * (conf - 0.6), abs=1e-3)
            assert r["nll"] == pytest.approx(_nll(conf, 0.6), abs=1e-4)
            brier = 0.6 * ((1 - conf) ** 2 + 9 * ((1 - conf) / 9) ** 2) + 0.4 * (
                conf ** 2 + (1 - (1 - conf) / 9) ** 2 + 8 * ((1 - conf) / 9) ** 2)
            assert r["brier"] == pytest.approx(brier, abs=1e-4)
            assert r["error_interval"] == wilson_interval(20, 50)
    summary = result["summary"]["5"]
    assert summary["deterministic+T"]["ece"] == pytest.approx(20, abs=1e-3)
    assert summary["deterministic"]["ece_minus_stochastic_interval"] == [0, 0]  # same probabilities, paired
    assert result["temperature"]["deterministic"]["how"] == "fitted on 50 clean held-out images"
    assert "| 5 |" in shift_table(result) and result["intervals"]["error_95_halfwidth_at_50_percent"] == 13.86


def test_wilson_interval_and_bootstrap_cover_the_estimate():
    assert wilson_interval(0, 10) == [0.0, pytest.approx(27.753, abs=1e-3)]  # z^2 / (n + z^2)
    low, high = wilson_interval(100, 1000)
    assert low == pytest.approx(8.292, abs=0.01) and high == pytest.approx(12.024, abs=0.01)
    gen = torch.Generator().manual_seed(0)
    probs = torch.softmax(3 * torch.randn(400, 10, generator=gen), -1).double()
    guess = torch.randint(10, (400,), generator=gen)
    labels = torch.where(torch.rand(400, generator=gen) < 0.7, probs.argmax(1), guess)
    boot = bootstrap_means([{"stochastic": probs}], labels, resamples=200, seed=0)["stochastic"]
    error = 100 * (probs.argmax(1) != labels).double().mean().item()
    lo, hi = boot["error_interval"]
    # the bootstrap interval of an error rate is close to the binomial one: +-1.96 sqrt(p (1 - p) / n)
    assert lo < error < hi and (hi - lo) / 2 == pytest.approx(196 * math.sqrt(error / 100 * (1 - error / 100) / 400),
                                                               rel=0.25)


def test_interrupted_evaluations_resume_from_the_cache_and_cross_fit_without_held_out_images(tmp_path, monkeypatch):
    monkeypatch.setenv("SWAPOUT_CACHE", str(tmp_path))
    images, labels = _set(40, 0.5)
    model = Constant()
    first = evaluate_shift(model, images, labels, corruptions=["fog"], severities=[2, 3], samples=2, resamples=0,
                           progress=False)
    calls = model.calls
    again = evaluate_shift(model, images, labels, corruptions=["fog"], severities=[2, 3], samples=2, resamples=0,
                           progress=False)
    assert calls > 0 and model.calls == calls and again["corrupted"] == first["corrupted"]  # nothing recomputed
    fitted = first["temperature"]["stochastic"]
    assert len(fitted["values"]) == 2 and "2-fold" in fitted["how"]


def test_stochastic_figures_depend_on_the_seed_only():
    """Two evaluations with the same seed give the same figures, whatever the global generator drew before:
    the held-out images' passes, and so the stochastic temperature, are seeded too."""
    images, labels = _labelled(40, 0)
    grid = dict(corruptions=["contrast"], severities=[5], samples=3, calibration=_labelled(40, 1),
                resamples=0, cache=False, progress=False)
    results = []
    for before in (1, 2):
        torch.manual_seed(before)
        results.append(evaluate_shift(Tiny(), images, labels, **grid))
    first, second = results
    assert first["temperature"] == second["temperature"]
    assert first["summary"] == second["summary"] and first["corrupted"] == second["corrupted"]
    other = evaluate_shift(Tiny(), images, labels, **{**grid, "seed": 1})
    assert other["temperature"]["stochastic"] != first["temperature"]["stochastic"]


def test_logits_of_a_changed_corruption_are_not_read_back(tmp_path, monkeypatch):
    """The logits cache is keyed by the corrupted images themselves: when a corruption changes (and with it
    the corrupted sets' cache version), its old logits are not reused."""
    from swapout.data import shifted
    from swapout.data.corruptions import CORRUPTIONS

    monkeypatch.setenv("SWAPOUT_CACHE", str(tmp_path))
    images, labels = _set(20, 0.5)
    grid = dict(corruptions=["contrast"], severities=[1], samples=0, resamples=0, progress=False)
    evaluate_shift(Tiny(), images, labels, **grid)
    monkeypatch.setattr(shifted, "_VERSION", "changed")
    monkeypatch.setitem(CORRUPTIONS, "contrast", CORRUPTIONS["contrast"]._replace(params=(0.05,) * 5))
    cached = evaluate_shift(Tiny(), images, labels, **grid)
    fresh = evaluate_shift(Tiny(), images, labels, **{**grid, "cache": False})
    assert cached["corrupted"] == fresh["corrupted"]


def test_api_rejects_stochastic_figures_without_masks_and_a_bad_grid():
    images, labels = _set(10, 0.5)
    with pytest.raises(ValueError, match="no random masks"):
        evaluate_shift(Constant(masks=False), images, labels, samples=5, cache=False, progress=False)
    with pytest.raises(ValueError, match="unknown corruption 'frost'"):
        evaluate_shift(Constant(), images, labels, corruptions=["frost"], cache=False, progress=False)
    with pytest.raises(ValueError, match="from 1 to 5"):
        evaluate_shift(Constant(), images, labels, severities=[6], cache=False, progress=False)
    with pytest.raises(ValueError, match="corruption 'fog' given more than once"):
        evaluate_shift(Constant(), images, labels, corruptions=["fog", "fog"], cache=False, progress=False)


def _run(tmp_path, **config):
    cfg = TrainConfig(depth=8, device="cpu", seed=3, **config)
    run = RunDir(tmp_path / "run")
    run.create()
    run.save_checkpoint({"model": build_model(cfg).state_dict(), "config": cfg.to_dict(),
                         "state": {"epoch": 1, "step": 1}})
    return run


@pytest.mark.parametrize("argv,message", [
    (["--shift", "--corruptions", "frost"], "unknown corruption 'frost'"),
    (["--shift", "--severities", "1,6"], "severities must be integers from 1 to 5, got 6"),
    (["--corruptions", "fog"], "--corruptions and --severities go with --shift"),
    (["--shift", "--corruptions", "fog,contrast,fog"], "corruption 'fog' given more than once; give each once"),
    (["--shift", "--severities", "1,3,1"], "severity 1 given more than once"),
])
def test_cli_bad_grid_is_one_line_and_exit_2(tmp_path, capsys, argv, message):
    assert main(["eval", str(tmp_path / "no-run"), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("swapout eval: error: ")


def test_cli_stochastic_figures_of_a_model_without_masks_is_one_line_and_exit_2(tmp_path, capsys):
    run = _run(tmp_path, method="resnet")
    assert main(["eval", str(run.path), "--shift", "--samples", "5"]) == 2
    err = capsys.readouterr().err
    assert "--samples 5 with --shift: this model has no random masks" in err and err.count("\n") == 1


@needs_data
def test_cli_shift_writes_json_and_figure(tmp_path, capsys, monkeypatch):
    from matplotlib.figure import Figure

    monkeypatch.setenv("SWAPOUT_CACHE", str(tmp_path / "cache"))
    figures, save = [], Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda fig, *a, **k: figures.append(fig) or save(fig, *a, **k))
    run = _run(tmp_path, val_split=49000)
    assert main(["eval", str(run.path), "--shift", "--samples", "2", "--repeats", "0", "--limit", "20",
                 "--corruptions", "contrast,gaussian_noise", "--severities", "5", "--quiet"]) == 0
    legend = [t.get_text() for t in figures[-1].legends[0].get_texts()]
    assert legend[0] == "resnet_v2_ours, seed 3: deterministic"  # the training seed tells two runs apart
    assert "\n" not in figures[-1].get_suptitle() and figures[-1].get_suptitle().startswith("run: corrupted copies")
    result = json.loads((run.path / "shift-test.json").read_text())
    assert set(result["corrupted"]) == {"contrast", "gaussian_noise"} and set(result["summary"]) == {"0", "5"}
    assert set(result["summary"]["5"]) == {"deterministic", "deterministic+T", "stochastic", "stochastic+T"}
    assert result["temperature"]["stochastic"]["how"] == "fitted on 20 clean held-out images"
    assert result["settings"]["images"] == 20 and (run.path / "shift-test.png").stat().st_size > 0
    out = capsys.readouterr().out
    assert "dataset shift (2 corruptions" in out and "95% Wilson interval" in out
