"""Join specifications: the paper's methods as joins, SkipForward's two readings, and one parse per run."""

import pytest
import torch

import swapout
from swapout import methods
from swapout.data.files import DataError
from swapout.runs.config import TrainConfig
from swapout.training.train import train


def test_skipforward_reading_on_x_is_equation_4_as_printed(record_masks):
    recorder = record_masks()
    x, fx = torch.randn(4, 3, 5, 5), torch.randn(4, 3, 5, 5)
    layer = swapout.SkipForward(0.3).train()
    y = layer(x, fx)
    mask = recorder.masks[-1].bool()
    assert torch.equal(y, torch.where(mask, x, fx))
    assert torch.equal(layer.eval()(x, fx), 0.3 * x + 0.7 * fx)


def test_skipforward_reading_on_fx_puts_theta_on_the_block_output(record_masks):
    recorder = record_masks()
    x, fx = torch.randn(4, 3, 5, 5), torch.randn(4, 3, 5, 5)
    layer = swapout.SkipForward(0.3, on="fx").train()
    y = layer(x, fx)
    mask = recorder.masks[-1].bool()
    assert torch.equal(y, torch.where(mask, fx, x))
    assert torch.equal(layer.eval()(x, fx), 0.7 * x + 0.3 * fx)


@pytest.mark.parametrize("on,first_block_reports", [("x", "x"), ("fx", "fx")])
def test_skipforward_default_schedule_and_the_first_block(on, first_block_reports):
    # Linear(1, 0.5): the first block's theta is 1. Read on X, it always reports X, so the weights of its
    # F(X) get no gradient; read on F(X), it always reports F(X).
    model = swapout.create_model("resnet_v2_ours", depth=8, method="skipforward", skipforward_on=on).train()
    first = model.blocks[0]
    assert first.join.thetas == (1.0,) and first.join.on == on
    model(torch.randn(4, 3, 32, 32)).sum().backward()
    grad = first.conv2.weight.grad
    assert (grad is None or not grad.abs().sum()) == (first_block_reports == "x")


def test_skipforward_on_fx_reads_theta2_and_refuses_theta1():
    joins = swapout.JoinSpec("skipforward", theta2="0.25", skipforward_on="fx").joins(2)
    assert [j.thetas for j in joins] == [(0.25,), (0.25,)]
    with pytest.raises(ValueError, match="takes theta2; theta1="):
        swapout.JoinSpec("skipforward", theta1="0.25", skipforward_on="fx")
    with pytest.raises(ValueError, match="skipforward_on applies to method 'skipforward' only"):
        swapout.JoinSpec("swapout", skipforward_on="fx")
    with pytest.raises(ValueError, match="skipforward_on must be 'x' or 'fx'"):
        swapout.JoinSpec("skipforward", skipforward_on="f")


@pytest.mark.parametrize("make", [lambda: swapout.StochasticDepth(1.5), lambda: swapout.Dropout(1.5),
                                  lambda: swapout.ResidualDropout(1.5), lambda: swapout.SkipForward(1.5)])
def test_baseline_errors_name_the_argument_given(make):
    with pytest.raises(ValueError) as caught:
        make()
    assert str(caught.value).startswith("theta must be") and "theta2" not in str(caught.value)


@pytest.fixture
def parses(monkeypatch):
    """The schedules parsed from here on, in order; training stops for want of data once the model is built."""
    import swapout.training.loop as training_loop

    def no_data(*args, **kwargs):
        raise DataError("no data in this test")

    calls = []
    real = methods.parse_schedule
    monkeypatch.setattr(methods, "parse_schedule", lambda spec: calls.append(spec) or real(spec))
    monkeypatch.setattr(training_loop, "load_split", no_data)
    return calls


def test_a_run_parses_each_schedule_once(tmp_path, parses):
    cfg = TrainConfig(depth=8, theta1="linear(1,0.5)", theta2="0.7", device="cpu")
    with pytest.raises(DataError):  # training stops after building the model
        train(cfg, tmp_path / "run", progress=False, log=lambda s: None)
    assert parses == ["linear(1,0.5)", "0.7"]
    assert not (tmp_path / "run").exists()


def test_the_command_line_parses_each_schedule_once(tmp_path, parses, capsys):
    # the command line checks the config before any work, and the model is built from the same parse
    from swapout.cli.main import main

    code = main(["train", "--depth", "8", "--theta1", "linear(1,0.5)", "--theta2", "0.7", "--quiet",
                 "--out", str(tmp_path / "run")])
    assert code == 2 and "no data in this test" in capsys.readouterr().err
    assert parses == ["linear(1,0.5)", "0.7"]


def test_create_model_takes_a_join_or_its_fields_not_both():
    spec = swapout.JoinSpec("residual_dropout", theta2=0.8)
    model = swapout.create_model("resnet_v1", depth=8, join=spec)
    assert all(b.join.thetas == (1.0, 0.8) for b in model.blocks)
    with pytest.raises(ValueError, match="not both"):
        swapout.create_model("resnet_v1", depth=8, join=spec, method="resnet")
