"""``swapout eval``: the Figure 2 curve against hand-computed values, which weights are evaluated, what the
progress bars count, and the same draws for the stochastic error and the curve."""

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import swapout.runs.eval_context as eval_context
import swapout.runs.evaluate as evaluate_run
from swapout.cli.main import main
from swapout.evaluation.errors import sample_curve
from swapout.runs.config import TrainConfig
from swapout.runs.experiment import build_model
from swapout.runs.rundir import RunDir, read_checkpoint
from swapout.training.train import write_pack

needs_data = pytest.mark.needs_data  # skipped without CIFAR-10: see the conftest.py at the top

# probability of class 0 for (repetition, pass, image); labels 0, 1, 0; no running mean is exactly 1/2
P0 = [[[0.9, 0.6, 0.4], [0.2, 0.3, 0.7], [0.6, 0.1, 0.8]],
      [[0.3, 0.2, 0.6], [0.4, 0.9, 0.9], [0.9, 0.8, 0.1]]]
LABELS = np.array([0, 1, 0])


class _Replay(nn.Module):
    """Returns the next rows of a table of logits at every call, whatever the input."""

    def __init__(self, p0):
        super().__init__()
        p = torch.tensor(p0, dtype=torch.float64).reshape(-1)
        self.table, self.row = torch.stack([p.log(), (1 - p).log()], 1).float(), 0

    def forward(self, x):
        out = self.table[self.row:self.row + len(x)]
        self.row += len(x)
        return out


def _curve(model, **kwargs):
    images = np.zeros((3, 32, 32, 3), dtype=np.uint8)
    return sample_curve(model, images, LABELS, (0, 0, 0), (1, 1, 1), "cpu", max_samples=3, repeats=2, **kwargs)


def test_sample_curve_means_and_standard_errors_by_hand():
    # running means of p0: repetition 1 predicts (0,0,1), (0,1,0), (0,1,0): errors 2/3, 0, 0;
    # repetition 2 predicts (1,1,0), (1,0,0), (0,0,0): errors 1/3, 2/3, 1/3.
    # standard error of two values a, b: |a - b| / sqrt(2) / sqrt(2) = |a - b| / 2
    curve = _curve(_Replay(P0))
    assert curve["mean_error"] == pytest.approx([50.0, 33.3333, 16.6667], abs=1e-4)
    assert curve["standard_error"] == pytest.approx([16.6667, 33.3333, 16.6667], abs=1e-4)
    assert curve["samples"] == [1, 2, 3] and curve["repeats"] == 2 and curve["images"] == 3
    # each repetition's own curve is kept, for paired comparisons between pass counts
    assert curve["errors"] == [pytest.approx([66.6667, 0, 0], abs=1e-4),
                               pytest.approx([33.3333, 66.6667, 33.3333], abs=1e-4)]
    # the first repetition can be passes already drawn: the model then supplies the second only
    first = _Replay(P0[0])(torch.zeros(9)).softmax(-1).view(3, 3, 2)
    assert _curve(_Replay(P0[1]), first=first)["mean_error"] == curve["mean_error"]


class _Bars:
    """Stands in for swapout.progress.Progress and records every bar."""

    made = []

    def __init__(self, total, label="", unit="img", enabled=True, **_):
        self.total, self.label, self.unit, self.done = total, label, unit, 0
        _Bars.made.append(self)

    def update(self, n, **_):
        self.done += n

    def close(self):
        pass


def _run(tmp_path):
    cfg = TrainConfig(depth=8, val_split=49000, device="cpu", seed=3)
    run = RunDir(tmp_path / "run")
    run.create()
    torch.manual_seed(3)
    for epoch in (2, 3):  # two checkpoints with different weights
        model = build_model(cfg)
        run.save_checkpoint({"model": model.state_dict(), "config": cfg.to_dict(),
                             "state": {"epoch": epoch, "step": 12}})
    return run


@needs_data
def test_damaged_checkpoint_names_the_weights_evaluated(tmp_path, capsys):
    run = _run(tmp_path)
    with open(run.checkpoint_path, "r+b") as fh:  # damage the latest checkpoint
        fh.truncate(1000)
    assert main(["eval", str(run.path), "--samples", "1", "--repeats", "0", "--limit", "20", "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert "damaged" not in out and err.count("\n") == 1  # a warning: one line on standard error
    assert err.startswith("swapout eval: warning: checkpoint.pt is damaged (truncated or corrupt")
    assert err.strip().endswith("; evaluating checkpoint.prev.pt (epoch 3, step 12)")
    result = json.loads((run.path / "eval-test.json").read_text())
    assert result["checkpoint"] == "checkpoint.prev.pt" and "damaged" in result["checkpoint_note"]


@needs_data
def test_a_run_that_kept_its_final_weights_alone_evaluates_as_before(tmp_path, capsys):
    run = _run(tmp_path)
    args = ["eval", str(run.path), "--samples", "2", "--repeats", "0", "--limit", "20", "--quiet"]
    assert main(args) == 0
    before = json.loads((run.path / "eval-test.json").read_text())
    latest = run.load_checkpoint()
    assert run.keep_weights_only() and not run.keep_weights_only()  # a second call has nothing to do
    assert sorted(p.name for p in run.path.glob("*.pt")) == ["weights.pt"]
    kept = read_checkpoint(run.weights_path)
    assert set(kept) == {"model", "config", "state"} and kept["state"] == {"epoch": 3, "step": 12}
    assert all(torch.equal(kept["model"][k], v) for k, v in latest["model"].items())
    capsys.readouterr()
    assert main(args) == 0
    after = json.loads((run.path / "eval-test.json").read_text())
    assert after.pop("checkpoint") == "weights.pt" and before.pop("checkpoint") == "checkpoint.pt"
    assert after == before  # the same weights and seed: the same figures


@needs_data
def test_a_run_whose_data_folder_is_gone_reads_the_default_one(tmp_path, capsys):
    # trained elsewhere: the recorded folder does not exist here; the default one (where needs_data found it) has it
    cfg = TrainConfig(depth=8, val_split=49000, device="cpu", seed=3, data_dir=str(tmp_path / "gone"))
    run = RunDir(tmp_path / "run")
    run.create()
    run.save_checkpoint({"model": build_model(cfg).state_dict(), "config": cfg.to_dict(), "state": {}})
    assert main(["eval", str(run.path), "--samples", "1", "--repeats", "0", "--limit", "20", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert f"the run's data folder {tmp_path / 'gone'} does not exist here; reading the data from the default" in err
    assert not (tmp_path / "gone").exists()


@needs_data
def test_progress_counts_images_and_one_pass_is_singular_and_errors_have_4_decimals(tmp_path, capsys, monkeypatch):
    run = _run(tmp_path)
    _Bars.made = []
    monkeypatch.setattr(eval_context, "Progress", _Bars)
    assert main(["eval", str(run.path), "--samples", "1", "--repeats", "1", "--limit", "200"]) == 0
    out = capsys.readouterr().out
    bar = _Bars.made[0]
    assert bar.total == bar.done == 200 and bar.unit == "img"
    assert "(1 pass)" in out and "1 passes" not in out
    text = (run.path / "eval-test.json").read_text()
    assert all(len(number.split(".")[1]) <= 4 for number in re.findall(r"\d+\.\d+", text))


@needs_data
def test_stochastic_error_and_curve_share_draws_with_several_passes(tmp_path, capsys, monkeypatch):
    run, rows = _run(tmp_path), []

    def counted(cfg):
        model = build_model(cfg)
        model.register_forward_pre_hook(lambda m, args: rows.append(len(args[0])))
        return model

    monkeypatch.setattr(evaluate_run, "build_model", counted)
    assert main(["eval", str(run.path), "--samples", "4", "--repeats", "1", "--limit", "300", "--quiet"]) == 0
    result = json.loads((run.path / "eval-test.json").read_text())
    curve = json.loads((run.path / "figure2-test.json").read_text())
    # one deterministic pass and 4 stochastic ones per image, no more: the curve's one repetition
    # reuses the stochastic evaluation's passes, so their errors agree exactly
    assert sum(rows) == 300 * (1 + 4)
    assert math.isclose(curve["mean_error"][3], result["stochastic_error"], abs_tol=1e-9)
    assert "repetition 1 of the curve is the stochastic evaluation above" in capsys.readouterr().out


@needs_data
def test_uncertainty_and_adaptive_options_write_their_results(tmp_path, capsys):
    run = _run(tmp_path)
    assert main(["eval", str(run.path), "--samples", "3", "--repeats", "0", "--limit", "40", "--uncertainty",
                 "--adaptive", "--delta", "0.2", "--quiet"]) == 0
    report = json.loads((run.path / "uncertainty-test.json").read_text())
    assert set(report["rows"]) == {"deterministic", "deterministic+T", "stochastic", "stochastic+T"}
    assert report["temperature_fit"] == "fitted on 40 held-out images" and report["ood_images"] == 40
    assert (run.path / "reliability-test.png").exists()
    assert len((run.path / "uncertainty-test-per-image.csv").read_text().splitlines()) == 41
    adaptive = json.loads((run.path / "eval-test.json").read_text())["adaptive"]
    # the rule cannot settle before 4 passes at delta 0.2, so every image stops at --samples 3
    assert adaptive["delta"] == 0.2 and adaptive["mean_passes"] == 3 and adaptive["max_passes"] == 3
    assert "adaptive stochastic inference (delta 0.2)" in capsys.readouterr().out


def _stochastic(run, capsys, *args):
    assert main(["eval", str(run.path), "--samples", "3", "--repeats", "2", "--limit", "50", "--quiet", *args]) == 0
    capsys.readouterr()
    result = json.loads((run.path / "eval-test.json").read_text())
    curve = json.loads((run.path / "figure2-test.json").read_text())
    return result, curve, (run.path / "uncertainty-test-per-image.csv").read_text()


@needs_data
def test_the_seed_fixes_every_stochastic_figure_and_is_recorded(tmp_path, capsys):
    run = _run(tmp_path)
    first = _stochastic(run, capsys, "--seed", "7", "--uncertainty")
    assert first[0]["seed"] == first[1]["seed"] == 7 and first[1]["checkpoint"] == "checkpoint.pt"
    torch.manual_seed(123)  # whatever the state of the generator before
    assert _stochastic(run, capsys, "--seed", "7", "--uncertainty") == first
    other = _stochastic(run, capsys, "--seed", "8", "--uncertainty")
    # per-image entropies and mutual information of the passes (6 decimals): other masks, other values
    assert other[0]["seed"] == 8 and other[2] != first[2] and other[1]["mean_error"] != first[1]["mean_error"]


@needs_data
def test_a_later_eval_keeps_the_blocks_it_does_not_compute(tmp_path, capsys):
    run = _run(tmp_path)
    args = ["eval", str(run.path), "--samples", "2", "--limit", "30", "--quiet"]
    assert main([*args, "--repeats", "2", "--adaptive", "--delta", "0.3", "--seed", "1"]) == 0
    assert main([*args, "--repeats", "0", "--seed", "2"]) == 0
    result = json.loads((run.path / "eval-test.json").read_text())
    assert result["seed"] == 2 and result["adaptive"]["delta"] == 0.3 and result["adaptive"]["seed"] == 1
    assert json.loads((run.path / "figure2-test.json").read_text())["seed"] == 1  # left by the first call, and says so
    assert main([*args, "--repeats", "0", "--adaptive", "--delta", "0.2"]) == 0
    assert json.loads((run.path / "eval-test.json").read_text())["adaptive"]["delta"] == 0.2  # computed again: new


@needs_data
@pytest.mark.parametrize("images,message", [("10000000", "the run trained on 1,000 images only; give at most 1,000"),
                                            ("1", "0 \\(none\\) or a number of training images >= 2")])
def test_an_impossible_recalibration_is_refused_before_any_evaluation(tmp_path, capsys, monkeypatch, images, message):
    run = _run(tmp_path)

    def evaluated(*args, **kwargs):
        raise AssertionError("evaluation started")

    monkeypatch.setattr(eval_context, "split_logits", evaluated)
    assert main(["eval", str(run.path), "--recalibrate-bn", images, "--limit", "20", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(message, err), err


@needs_data
def test_uncertainty_without_masks_says_that_only_deterministic_rows_come(tmp_path, capsys):
    cfg = TrainConfig(depth=8, method="resnet", val_split=49000, device="cpu")
    run = RunDir(tmp_path / "resnet")
    run.create()
    run.save_checkpoint({"model": build_model(cfg).state_dict(), "config": cfg.to_dict(), "state": {}})
    assert main(["eval", str(run.path), "--limit", "20", "--uncertainty", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "warning: --uncertainty: this model has no random masks" in err
    assert set(json.loads((run.path / "uncertainty-test.json").read_text())["rows"]) == {"deterministic",
                                                                                         "deterministic+T"}


def test_an_empty_folder_has_nothing_to_evaluate(tmp_path, capsys):
    assert main(["eval", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"swapout eval: error: no checkpoint in {tmp_path}: nothing to evaluate (a run directory " \
                          f"holds checkpoint.pt or, once finished, weights.pt; or give a checkpoint file)"


def test_a_packs_folder_or_checkpoint_is_refused_naming_its_runs(tmp_path, capsys):
    cfgs = [TrainConfig(depth=8, method="swapout", device="cpu", seed=s) for s in (0, 1)]
    runs = [tmp_path / "swapout" / f"seed-{c.seed}" for c in cfgs]
    pack = tmp_path / "packs" / "pack-1"
    write_pack(pack, cfgs, runs)
    RunDir(pack).save_checkpoint({"model": {}, "config": [c.to_dict() for c in cfgs], "state": {}})
    for target, what in ((pack, "a pack's folder"), (pack / "checkpoint.pt", "the checkpoint of a pack")):
        assert main(["eval", str(target), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err, err
        assert f"{target} is {what} (one packed network of 2 runs), not a run: evaluate each of its runs " \
               f"instead: {runs[0]}, {runs[1]}" in err


def test_load_run_gives_the_latest_weights_ready_for_predict(tmp_path):
    import swapout

    run = _run(tmp_path)
    latest = read_checkpoint(run.checkpoint_path)
    reference = build_model(TrainConfig.from_dict(latest["config"]))
    reference.load_state_dict(latest["model"])
    model = evaluate_run.load_run(run.path, device="cpu")
    assert not model.training and next(model.parameters()).device.type == "cpu"
    x = torch.randn(3, 3, 32, 32)
    torch.testing.assert_close(model(x), reference.eval()(x))  # the latest of the two checkpoints, not the first
    assert swapout.predict(model, x, samples=2).shape == (3, 10)
    with open(run.checkpoint_path, "r+b") as fh:  # damaged: the previous checkpoint, with a warning
        fh.truncate(1000)
    with pytest.warns(RuntimeWarning, match=r"checkpoint.pt is damaged .*; loading checkpoint.prev.pt"):
        evaluate_run.load_run(run.path, device="cpu")
    with pytest.raises(ValueError, match="nothing-here: no such run directory or checkpoint file"):
        evaluate_run.load_run(tmp_path / "nothing-here")


_INTEROP = Path(__file__).resolve().parents[2] / ".interop"


@pytest.mark.skipif(torch.version.cuda is not None or not (_INTEROP / "torchvision").is_dir(),
                    reason="needs PyPI's torchvision in .interop/ beside a CPU-only torch (see .ci/run)")
def test_a_torchvision_built_for_another_torch_is_one_line_with_the_fix(tmp_path):
    # On the path as a user's pip would put it, without the test suite's workaround (tests/conftest.py): the
    # options' metrics come from torchmetrics, which imports that torchvision, whose operators fail to load
    run = _run(tmp_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(_INTEROP), os.environ.get("PYTHONPATH")]))}
    script = (f"from swapout.cli.main import main; print([main(['eval', {str(run.path)!r}, option, '--limit', '20', "
              f"'--quiet']) for option in ('--uncertainty', '--shift')])")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert done.stdout.strip() == "[2, 2]" and "Traceback" not in done.stderr, done.stdout + done.stderr
    lines = done.stderr.strip().split("\n")
    assert len(lines) == 2 and lines[0] == lines[1], done.stderr
    assert re.search(r"^swapout eval: error: torchmetrics imports torchvision whenever it is installed, and the "
                     r"torchvision \S+ in .* does not fit this torch .*: operator torchvision::nms does not exist\. "
                     r"Install the torchvision built for it \(pip install .*\), or uninstall torchvision$",
                     lines[0]), done.stderr
