"""The training step: device-side running figures, the non-finite check, and the compiled path on the CPU."""

import json

import pytest
import torch

from swapout import create_model
from swapout.runs.config import TrainConfig
from swapout.runs.rundir import RunDir, read_checkpoint
from swapout.training import step as step_module
from swapout.training.step import NotCompiled, TrainStep, resolve_speed
from swapout.training.train import train

needs_data = pytest.mark.needs_data  # skipped without CIFAR-10: see the conftest.py at the top


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


def _recording_compile(monkeypatch):
    """torch.compile with a backend that records Dynamo's graphs and runs them as traced. Caches and
    recompile limits are Dynamo's whatever the backend, and no compiler runs, so this is fast."""
    graphs, real = [], torch.compile

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    monkeypatch.setattr(torch, "compile", lambda fn, mode=None, **options: real(fn, backend=backend, **options))
    return graphs


def _tiny_step(i):
    """A compiled step of a network of its own shapes (so no compiled code of another one fits it)."""
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4 + i, 3), torch.nn.Flatten(), torch.nn.Linear((4 + i) * 36, 10))
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    return TrainStep(net, opt, torch.device("cpu"), compile=True, channels_last=False)


@pytest.mark.parametrize("isolate", [True, False], ids=["own-caches", "reset"])
def test_more_than_eight_networks_in_one_process_each_get_compiled(monkeypatch, isolate):
    # Dynamo caches per code object with a recompile limit of 8; every TrainStep compiles the same
    # methods. "reset" is the path of a torch without torch.compile(isolate_recompiles=...).
    if isolate and not step_module._ISOLATE:
        pytest.skip("this torch.compile has no isolate_recompiles")
    monkeypatch.setattr(step_module, "_ISOLATE", isolate)
    graphs = _recording_compile(monkeypatch)
    x, y = torch.randn(4, 3, 8, 8), torch.randint(0, 10, (4,))
    for i in range(9):
        step, before = _tiny_step(i), len(graphs)
        step(x, y)
        assert len(graphs) - before >= 2, f"network {i + 1}: {len(graphs) - before} graphs"  # forward, update
        compiled = step.check_compiled()
        assert compiled.forward_graphs >= 1 and compiled.update_graphs >= 1 and compiled.limit_hits == 0


def test_check_compiled_tells_a_step_that_ran_eagerly(monkeypatch):
    # the compiled functions shared by every TrainStep, as they were: from the 5th optimizer (of any
    # TrainStep of this process) the update runs eagerly, and check_compiled must say so
    _recording_compile(monkeypatch)
    monkeypatch.setattr(step_module, "_compile", lambda fn, **options: torch.compile(fn, **options))
    monkeypatch.setattr(step_module, "_ISOLATE", True)  # and no reset
    x, y = torch.randn(4, 3, 8, 8), torch.randint(0, 10, (4,))
    try:
        for i in range(10):
            step = _tiny_step(i)
            step(x, y)
            try:
                step.check_compiled()
            except NotCompiled as err:
                assert "optimizer update" in str(err) or "forward pass" in str(err)
                break
        else:
            pytest.fail("ten TrainSteps sharing their compiled functions all passed check_compiled")
    finally:
        torch._dynamo.reset()  # the shared code objects hit their limit: leave no trace for other tests
    with pytest.raises(NotCompiled, match="compile=False"):
        _step()[1].check_compiled()


def test_fp32_on_cuda_is_ieee_float32_and_cudnn_autotunes():
    # process-wide torch settings, which TrainStep applies on CUDA; here only the settings can be checked
    flags = (torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    try:
        torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32 = False, True  # torch's defaults
        step_module.set_cuda_backends("bf16")
        assert torch.backends.cudnn.benchmark  # static shapes
        assert torch.backends.cudnn.allow_tf32  # left as torch has it: bf16 convolutions do not use TF32
        step_module.set_cuda_backends("fp32")
        assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32 = flags[:2]
        torch.backends.cuda.matmul.allow_tf32 = flags[2]
