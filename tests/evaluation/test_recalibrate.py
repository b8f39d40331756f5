"""BatchNorm recalibration: statistics of deterministic inference, layer choices, and the original run untouched."""

import copy
import hashlib
import json

import numpy as np
import pytest
import torch

import swapout
from swapout.cli.main import main
from swapout.data.pipeline import eval_batches
from swapout.evaluation.recalibrate import batchnorms_after_random_joins, recalibrate_bn
from swapout.runs.config import TrainConfig
from swapout.runs.experiment import build_model
from swapout.runs.rundir import RunDir, read_checkpoint

needs_data = pytest.mark.needs_data  # skipped without CIFAR-10: see the conftest.py at the top

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def _model():
    model = swapout.create_model("resnet_v2_ours", depth=8, num_classes=10, method="swapout")  # Linear(1, 0.5)
    model.train()
    with torch.no_grad():  # running statistics gathered under random masks, as in training
        for _ in range(3):
            model(torch.randn(32, 3, 32, 32))
    return model.eval()


def _images(n=64):
    return np.random.default_rng(0).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), np.zeros(n, dtype=np.int64)


def test_statistics_are_those_of_deterministic_inference():
    model, (images, labels) = _model(), _images()
    info = recalibrate_bn(model, images, labels, MEAN, STD, "cpu", batch_size=64)
    assert info == {"images": 64, "augment": False, "layers": "all", "stats": "both", "batchnorms": 7}
    assert not model.training and all(j.inference == "deterministic" for j in model.modules()
                                       if isinstance(j, swapout.SwapoutJoin))
    seen = {}
    bn = model.blocks[2].bn1  # the first BatchNorm after a join with random masks (theta 0.75)
    bn.register_forward_hook(lambda m, inp, out: seen.setdefault("x", inp[0]))
    x, _ = next(eval_batches(images, labels, MEAN, STD, "cpu", 64))
    with torch.no_grad():
        model(x)
    # the recalibrated layers before it see the same batch, so its statistics are those of its input;
    # statistics gathered with masks sampled instead would overstate the variance by 35% or more here
    torch.testing.assert_close(bn.running_mean, seen["x"].mean((0, 2, 3)), atol=1e-4, rtol=0)
    torch.testing.assert_close(bn.running_var, seen["x"].var((0, 2, 3)), rtol=1e-3, atol=0)


def test_tensors_are_taken_as_arrays_and_other_layouts_refused_with_what_is_expected():
    (images, labels), model = _images(), _model()
    models = [model, copy.deepcopy(model)]
    recalibrate_bn(models[0], images, labels, MEAN, STD, "cpu", batch_size=32)
    recalibrate_bn(models[1], torch.from_numpy(images), torch.from_numpy(labels), MEAN, STD, "cpu", batch_size=32)
    for a, b in zip(models[0].state_dict().values(), models[1].state_dict().values()):
        assert torch.equal(a, b)
    nchw = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    with pytest.raises(TypeError, match=r"uint8 \(N, H, W, 3\) .* got torch.float32 of shape \(64, 3, 32, 32\)"):
        recalibrate_bn(models[0], nchw, labels, MEAN, STD, "cpu")


def test_layer_and_statistic_choices():
    model = _model()
    names = batchnorms_after_random_joins(model)
    assert names == ["blocks.2.bn1", "blocks.2.bn2", "head.0"]
    before = copy.deepcopy(model.state_dict())
    recalibrate_bn(model, *_images(), MEAN, STD, "cpu", layers="after-random-joins", stats="variance", augment=True,
                   batch_size=32)
    after = model.state_dict()
    for key, value in before.items():
        layer, _, field = key.rpartition(".")
        changed = layer in names and field in ("running_var", "num_batches_tracked")
        assert torch.equal(value, after[key]) != changed, key
    assert all(m.momentum == 0.1 for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))


@pytest.mark.parametrize("kwargs", [dict(layers="some"), dict(stats="mean"), dict(batch_size=1)])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        recalibrate_bn(_model(), *_images(8), MEAN, STD, "cpu", **kwargs)


def _digests(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@needs_data
def test_recalibration_writes_beside_the_run_and_leaves_it_untouched(tmp_path, capsys):
    cfg = TrainConfig(depth=8, val_split=49000, device="cpu")
    run = RunDir(tmp_path / "run")
    run.create()
    (run.path / "config.json").write_text(json.dumps({"config": cfg.to_dict()}))
    model = build_model(cfg)
    for _ in range(2):  # a checkpoint and a previous one
        run.save_checkpoint({"model": model.state_dict(), "config": cfg.to_dict(), "state": {"epoch": 1, "step": 0}})
    original = _digests(run.path)
    assert main(["eval", str(run.path), "--samples", "2", "--repeats", "0", "--limit", "40", "--recalibrate-bn", "200",
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "BatchNorm recalibrated on 200 training images" in out
    now = _digests(run.path)
    assert {k: now[k] for k in original} == original  # every original file is byte-for-byte the same
    new = read_checkpoint(run.path / "checkpoint.bn-recalibrated-200.pt")
    old = read_checkpoint(run.path / "checkpoint.pt")
    assert new["bn_recalibration"]["images"] == 200 and new["bn_recalibration"]["from"] == "checkpoint.pt"
    for key, value in old["model"].items():
        assert torch.equal(value, new["model"][key]) != ("running_" in key or "num_batches" in key), key
    result = json.loads((run.path / "eval-test.json").read_text())
    assert result["bn_recalibrated"]["file"] == "checkpoint.bn-recalibrated-200.pt"
