"""The training step: device-side running figures, the non-finite check, and the compiled path on the CPU."""

import json

import pytest
import torch

from swapout import create_model
from swapout.data import files as data
from swapout.runs.config import TrainConfig
from swapout.runs.rundir import RunDir, read_checkpoint
from swapout.training.step import TrainStep, resolve_speed
from swapout.training.train import train

needs_data = pytest.mark.skipif(not (data.default_data_dir() / "cifar10-train.npz").exists(),
                                reason="CIFAR-10 (../shared/data) is not available here")


def _step(precision="fp32"):
    model = create_model("resnet_v2_ours", depth=8, method="resnet")
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    return model, TrainStep(model, opt, torch.device("cpu"), precision=precision)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_running_figures_stay_on_the_device_and_add_up(precision):
    model, step = _step(precision)
    batches = [(torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))) for _ in range(3)]
    losses, right = [], 0
    for x, y in batches:
        with torch.no_grad(), torch.autocast("cpu", torch.bfloat16, enabled=precision == "bf16"):
            # the same weights the step is about to use, in the layout it uses, and no masks to differ
            logits = model(x.contiguous(memory_format=torch.channels_last))
        losses.append(torch.nn.functional.cross_entropy(logits.float(), y).item())
        right += int((logits.argmax(1) == y).sum())
        step(x, y)
    figures = step.read()
    figures = figures[0]
    assert figures.images == 24 and figures.first_bad == -1 and figures.right == right
    assert figures.loss_sum == pytest.approx(8 * sum(losses), rel=1e-5)
    step.reset_sums()
    assert step.read()[0].images == 0


def test_the_first_non_finite_step_is_remembered_without_reading_it():
    _, step = _step()
    for i in range(5):
        x = torch.randn(4, 3, 32, 32)
        if i in (2, 3):
            x[0, 0, 0, 0] = float("nan")
        step(x, torch.zeros(4, dtype=torch.long))
    assert step.read()[0].first_bad == 2


def test_auto_speed_is_fast_on_cuda_and_plain_on_the_cpu():
    assert resolve_speed("auto", None, torch.device("cuda")) == ("bf16", True)
    assert resolve_speed("auto", None, torch.device("cpu")) == ("fp32", False)
    assert resolve_speed("bf16", True, torch.device("cpu")) == ("bf16", True)
    assert resolve_speed("fp32", False, torch.device("cuda")) == ("fp32", False)
    # checked where it enters: the config, and a TrainStep given it directly
    with pytest.raises(ValueError, match="precision must be"):
        TrainConfig(precision="fp16").validate()
    with pytest.raises(ValueError, match="compile must be true, false or None"):
        TrainConfig(compile="yes").validate()
    assert TrainConfig.from_dict({"compile": "auto"}).compile is None  # a config written by earlier versions
    assert TrainConfig.from_dict({"compile": "true"}).compile is True


@needs_data
def test_compiled_run_on_the_cpu_resumes_exactly(tmp_path):
    # A compiled swapout run of 6 steps, against the same run stopped after 3 steps and resumed: the
    # checkpoint restores the weights, the optimizer, the random state and the data position, and the
    # compiled step draws its masks from the restored generator.
    tiny = dict(depth=8, val_split=49000, batch_size=32, epochs=1, eval_samples=2, eval_limit=50, seed=3,
                device="cpu", compile=True, checkpoint_every=3)
    quiet = dict(progress=False, log=lambda s: None)
    whole = train(TrainConfig(**tiny, max_steps=6), tmp_path / "whole", **quiet)
    train(TrainConfig(**tiny, max_steps=3), tmp_path / "split", **quiet)
    resumed = train(TrainConfig(**tiny, max_steps=6), tmp_path / "split", resume=True, **quiet)
    assert whole["splits"] == resumed["splits"] and resumed["steps"] == 6
    a, b = (read_checkpoint(tmp_path / r / "checkpoint.pt")["model"] for r in ("whole", "split"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "train_time_s"} for r in rows]  # noqa: E731
    assert strip(RunDir(tmp_path / "whole").read_metrics()) == strip(RunDir(tmp_path / "split").read_metrics())
    resolved = json.loads((tmp_path / "whole" / "config.json").read_text())["resolved"]
    assert resolved["compile"] is True and resolved["precision"] == "fp32"
