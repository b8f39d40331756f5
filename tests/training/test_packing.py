"""Packed runs: G networks as one with grouped layers; each run exactly what it would be alone."""

import contextlib
import json
import math

import pytest
import torch
import torch.nn.functional as F

import swapout
from swapout.cli.main import main
from swapout.layers import StochasticDepth, Swapout
from swapout.runs.config import TrainConfig
from swapout.runs.rundir import RunDir, read_checkpoint
from swapout.training.packing import PackedJoin, pack, pack_state, split_logits, unpack_state
from swapout.training.train import train, train_pack, write_pack

needs_data = pytest.mark.needs_data  # skipped without CIFAR-10: see the conftest.py at the top

# 1,000 training images (the rest held out), batches of 32: 31 steps per epoch
TINY = dict(depth=8, val_split=49000, batch_size=32, epochs=2, eval_samples=2, eval_limit=100, device="cpu")


def _models(n, name="resnet_v2_ours", depth=8, **kw):
    out = []
    for seed in range(n):
        torch.manual_seed(seed)
        out.append(swapout.create_model(name, depth=depth, **kw))
    return out


def test_a_pack_keeps_the_plain_keys_and_each_group_unpacks_to_its_run():
    models = _models(3, method="swapout")
    packed = pack(models)
    assert list(packed.state_dict()) == list(models[0].state_dict())
    for g, m in enumerate(models):
        mine = unpack_state(packed.state_dict(), 3, g)
        assert all(torch.equal(mine[k], v) for k, v in m.state_dict().items())
    again = pack_state([unpack_state(packed.state_dict(), 3, g) for g in range(3)])
    assert all(torch.equal(again[k], v) for k, v in packed.state_dict().items())
    packed.load_state_dict(again)  # and it loads back


@pytest.mark.parametrize("name", ["resnet_v2_ours", "resnet_v1_ours", "preact_resnet"])
def test_a_maskless_packed_step_gives_each_run_its_own_gradients(name):
    depth = 11 if name == "preact_resnet" else 8
    models = _models(3, name, depth=depth, **({} if name == "preact_resnet" else {"method": "resnet"}))
    packed = pack(models)
    x, y = torch.randn(3, 6, 3, 32, 32), torch.randint(0, 10, (3, 6))
    logits = split_logits(packed(torch.cat(list(x), 1)), 3)
    sum(F.cross_entropy(logits[:, g], y[g]) for g in range(3)).backward()
    grads = dict(packed.named_parameters())
    for g, m in enumerate(models):
        F.cross_entropy(m(x[g]), y[g]).backward()
        for k, p in m.named_parameters():
            # a bias before BatchNorm has a gradient that cancels to ~1e-6: float32 rounding is absolute there
            assert torch.allclose(grads[k].grad.chunk(3)[g], p.grad, rtol=1e-3, atol=1e-5), (name, k)
        # BatchNorm statistics (train mode) are each run's own
        for k, v in m.state_dict().items():
            if "running" in k:
                assert torch.allclose(packed.state_dict()[k].chunk(3)[g], v, rtol=1e-5, atol=1e-6), k


def _decode(join, runs, shape=(64, 8, 16, 16)):
    """Masks of each run, read off the output for X = 1, F(X) = 2: output = Theta1 + 2*Theta2."""
    n, c, h, w = shape
    out = join(torch.ones(n, runs * c, h, w), torch.full((n, runs * c, h, w), 2.0))
    out = out.view(n, runs, c, h, w)
    return out.remainder(2), out.div(2).floor()


def test_each_run_keeps_at_its_own_thetas_and_the_runs_masks_are_independent():
    thetas = [(0.2, 0.9), (0.5, 0.5), (0.8, 0.3), (1.0, 0.6)]
    join = PackedJoin([Swapout(a, b) for a, b in thetas]).train()
    torch.manual_seed(0)
    m1, m2 = _decode(join, len(thetas))
    per_run = m1[:, 0].numel()  # 131,072 units per run
    for g, (a, b) in enumerate(thetas):
        for mask, theta in ((m1[:, g], a), (m2[:, g], b)):
            # 5 standard errors of a Bernoulli(theta) mean over per_run units
            assert abs(mask.mean().item() - theta) <= 5 * math.sqrt(theta * (1 - theta) / per_run) + 1e-12
    # independence: how often two units at the same place are both kept equals the product of their rates
    for (g, a), (h, b) in ((g, h) for g in enumerate(thetas) for h in enumerate(thetas) if g[0] < h[0]):
        for first, second, p in ((m1[:, g], m1[:, h], a[0] * b[0]), (m2[:, g], m2[:, h], a[1] * b[1]),
                                 (m1[:, g], m2[:, h], a[0] * b[1])):
            assert abs((first * second).mean().item() - p) <= 5 * math.sqrt(p * (1 - p) / per_run) + 1e-12
    # theta1 and theta2 of one run are independent too
    p = thetas[1][0] * thetas[1][1]
    assert abs((m1[:, 1] * m2[:, 1]).mean().item() - p) <= 5 * math.sqrt(p * (1 - p) / per_run)


def test_stochastic_depth_draws_one_mask_per_run_and_step():
    join = PackedJoin([StochasticDepth(0.3), StochasticDepth(0.8)]).train()
    torch.manual_seed(0)
    calls, kept = 2000, torch.zeros(2)
    for _ in range(calls):
        _, m2 = _decode(join, 2, shape=(4, 3, 2, 2))
        flat = m2.transpose(0, 1).reshape(2, -1)
        assert bool((flat == flat[:, :1]).all())  # one draw for the whole batch of each run
        kept += flat[:, 0]
    for g, theta in enumerate((0.3, 0.8)):
        assert abs(kept[g].item() / calls - theta) <= 5 * math.sqrt(theta * (1 - theta) / calls)


def test_runs_of_different_granularities_share_a_pack_each_drawing_at_its_own():
    from swapout.training.sweep_packs import check_packable

    # granularity is a run's own, as its keep probabilities are: a named pack takes runs that differ in it
    check_packable([TrainConfig(depth=8, method="swapout", granularity=g, seed=s)
                    for s, g in enumerate(("unit", "channel"))], "mine")
    check_packable([TrainConfig(depth=8, method=m) for m in ("swapout", "stochastic_depth")], "mine")
    with pytest.raises(ValueError, match="pack 'mine': its runs' joins combine X and F\\(X\\) differently \\(methods "
                                         "skipforward on x, swapout\\).*at any keep probabilities and granularities"):
        check_packable([TrainConfig(depth=8, method=m) for m in ("swapout", "skipforward")], "mine")
    runs = [(Swapout(0.5, 0.5), "unit"), (StochasticDepth(0.3), "batch"), (Swapout(0.6, 0.4, "channel"), "channel"),
            (Swapout(0.7, 0.2, "sample"), "sample")]
    join = PackedJoin([j for j, _ in runs]).train()
    assert join.granularities == tuple(g for _, g in runs)
    calls, kept = 300, torch.zeros(len(runs))
    for _ in range(calls):
        _, m2 = _decode(join, len(runs), shape=(8, 4, 3, 3))  # (N, G, C, H, W): theta2's masks
        for g, (_, granularity) in enumerate(runs):
            m = m2[:, g]
            constant = {"unit": (), "channel": (2, 3), "sample": (1, 2, 3), "batch": (0, 1, 2, 3)}[granularity]
            if constant:  # one draw per channel, sample or batch of this run: constant over the other dimensions
                assert bool((m == m.amax(constant, keepdim=True)).all()), granularity
        kept += m2.transpose(0, 1).reshape(len(runs), -1).mean(1)
    for g, theta in enumerate((0.5, 0.3, 0.4, 0.2)):  # 5 standard errors of the coarsest draw's mean
        draws = calls * {"unit": 8 * 36, "channel": 8 * 4, "sample": 8, "batch": 1}[runs[g][1]]
        assert abs(kept[g].item() / calls - theta) <= 5 * math.sqrt(theta * (1 - theta) / draws), g
    # stochastic inference of 2 passes per call: the batch-granularity run draws once per pass
    swapout.set_inference(join.eval(), "stochastic")
    join.passes_per_call = 2
    seen = set()
    for _ in range(40):
        _, m2 = _decode(join, len(runs), shape=(4, 4, 3, 3))
        halves = m2[:, 1].reshape(2, -1)
        assert bool((halves == halves[:, :1]).all())
        seen.add(tuple(halves[:, 0].tolist()))
    assert {(0.0, 1.0), (1.0, 0.0)} & seen  # the two passes' draws differ at times


def test_what_cannot_share_a_pack_is_refused():
    with pytest.raises(ValueError, match="cannot pack ResNetV1: its forward mixes the channels"):
        pack(_models(2, "resnet_v1"))  # option-A shortcuts pad channels at the end
    mixed = _models(1, method="swapout") + _models(1, method="skipforward")
    with pytest.raises(ValueError, match="joins of different kinds cannot share a pack"):
        pack(mixed)
    with pytest.raises(ValueError, match="must share the architecture"):
        pack(_models(1, depth=8) + _models(1, depth=14))
    with pytest.raises(ValueError, match="runs of one pack share everything but"):
        TrainConfig.check_pack([TrainConfig(depth=8), TrainConfig(depth=8, lr=0.05)])


def _tiny(seed, **kw):
    return TrainConfig(**{**TINY, "seed": seed, **kw})


@pytest.fixture
def float64():
    # Early training at lr 0.1 amplifies rounding: two float32 solo runs of one seed, one on 1 thread and
    # one on 2, differ by ~1 in some BatchNorm variance after 12 steps. A grouped float32 convolution
    # sums in another order than a plain one, so the comparison is made in float64, where rounding
    # stays far below float32's even after amplification.
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


@needs_data
def test_packed_maskless_runs_equal_their_solo_runs_after_12_steps(tmp_path, float64):
    # Float64 convolutions are slow on a CPU, evaluation included: batches of 16, and 50 images evaluated
    # per split. 12 steps already carry momentum, weight decay and BatchNorm statistics through the updates.
    cfgs = [_tiny(s, method="resnet", max_steps=12, eval_samples=0, batch_size=16, eval_limit=50) for s in (0, 1, 2)]
    solo = [train(c, tmp_path / f"solo-{c.seed}", progress=False, log=lambda s: None) for c in cfgs]
    write_pack(tmp_path / "pack", cfgs, [tmp_path / f"run-{c.seed}" for c in cfgs])
    packed = train_pack(tmp_path / "pack", progress=False, log=lambda s: None)
    for c, alone, together in zip(cfgs, solo, packed):
        a = read_checkpoint(tmp_path / f"solo-{c.seed}" / "checkpoint.pt")
        b = read_checkpoint(tmp_path / f"run-{c.seed}" / "checkpoint.pt")
        assert b["state"]["global_step"] == a["state"]["global_step"] == 12
        for k, v in a["model"].items():  # parameters and BatchNorm statistics, within float32 rounding
            assert v.dtype in (torch.float64, torch.int64) and torch.allclose(b["model"][k], v, rtol=1e-7, atol=1e-9), k
        for k, v in a["optimizer"]["state"].items():
            assert torch.allclose(b["optimizer"]["state"][k]["momentum_buffer"], v["momentum_buffer"], rtol=1e-7,
                                  atol=1e-9)
        assert together["splits"] == alone["splits"]


@needs_data
def test_a_run_whose_loss_becomes_non_finite_stops_alone(tmp_path, monkeypatch):
    import swapout.data.pipeline as pipeline

    cfgs = [_tiny(s, method="swapout", max_steps=16, checkpoint_every=4) for s in (0, 1, 2)]
    write_pack(tmp_path / "clean", cfgs, [tmp_path / f"clean-{c.seed}" for c in cfgs])
    clean = train_pack(tmp_path / "clean", progress=False, log=lambda s: None)

    real = pipeline.TrainLoader.batches

    def poisoned(self, epoch, start=0):  # run 1's 10th batch holds a NaN
        for step, (x, y) in enumerate(real(self, epoch, start), start):
            yield (x * float("nan") if self.seed == 1 and step == 9 else x), y

    monkeypatch.setattr(pipeline.TrainLoader, "batches", poisoned)
    write_pack(tmp_path / "pack", cfgs, [tmp_path / f"run-{c.seed}" for c in cfgs])
    lines = []
    results = train_pack(tmp_path / "pack", progress=False, log=lines.append)
    assert "the loss became non-finite at epoch 1, step 10; training stopped" in results[1]["failed"]
    assert any("The other runs of the pack go on" in line for line in lines)
    bad = read_checkpoint(tmp_path / "run-1" / "checkpoint.pt")  # its last good checkpoint, before step 10
    assert bad["state"]["global_step"] == 8 and not (tmp_path / "run-1" / "results.json").exists()
    assert all(torch.isfinite(v).all() for v in bad["model"].values() if v.is_floating_point())
    for g in (0, 2):  # the others finish, as if nothing had happened
        assert results[g]["steps"] == 16 and results[g]["splits"] == clean[g]["splits"]
        a = read_checkpoint(tmp_path / f"run-{g}" / "checkpoint.pt")["model"]
        b = read_checkpoint(tmp_path / f"clean-{g}" / "checkpoint.pt")["model"]
        assert all(torch.equal(a[k], b[k]) for k in a)


# as test_sweep.py's TINY, for the same reasons
SWEEP_TINY = ["--depth", "8", "--val-split", "49000", "--batch-size", "32", "--epochs", "2", "--max-steps", "12",
              "--eval-samples", "2", "--eval-limit", "50", "--checkpoint-every", "4", "--device", "cpu"]


@needs_data
def test_a_packed_sweep_stopped_by_its_budget_continues_exactly_and_its_runs_evaluate(tmp_path, swapout_here):
    presets = ["--presets", "short/cpu-20-w1-resnet,short/cpu-20-w1-swapout", "--seeds", "0,1", "--pack", "4"]
    whole = swapout_here("sweep", *presets, "--out", str(tmp_path / "whole"), *SWEEP_TINY)
    assert whole.returncode == 0 and "4 runs (1 pack)" in whole.stdout, whole.stdout + whole.stderr
    first = swapout_here("sweep", *presets, "--out", str(tmp_path / "cut"), "--budget-minutes", "0.01", *SWEEP_TINY)
    assert first.returncode == 0 and "0 of 4 runs done, 4 stopped" in first.stdout, first.stdout + first.stderr
    stopped = read_checkpoint(tmp_path / "cut" / "packs" / "pack-1" / "checkpoint.pt")["state"]["global_step"]
    assert 1 <= stopped < 12  # SIGTERM: the pack finished its step and checkpointed
    second = swapout_here("sweep", "--out", str(tmp_path / "cut"), "--device", "cpu")
    assert second.returncode == 0 and second.stdout.count("[done]") == 4, second.stdout + second.stderr
    assert "(resumed)" in second.stdout
    for run in sorted((tmp_path / "whole").glob("*/seed-*")):
        other = tmp_path / "cut" / run.relative_to(tmp_path / "whole")
        a, b = (read_checkpoint(p / "checkpoint.pt") for p in (run, other))
        assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])  # resumed = uninterrupted
        assert json.loads((run / "results.json").read_text())["splits"] == \
            json.loads((other / "results.json").read_text())["splits"]
        assert json.loads((run / "config.json").read_text())["resolved"]["pack"]["runs"] == 4
    run = tmp_path / "cut" / "short-cpu-20-w1-swapout" / "seed-1"  # a plain checkpoint: swapout eval as usual
    assert main(["eval", str(run), "--samples", "2", "--repeats", "2", "--limit", "50", "--quiet"]) == 0
    assert json.loads((run / "eval-test.json").read_text())["images"] == 50


@pytest.mark.parametrize("args,message", [
    (["--pack", "0"], "--pack: expected an integer >= 1"),
    (["--pack", "2", "--model", "resnet_v1"], "pack 'pack-1': cannot pack ResNetV1"),
    (["--pack", "2", "--file", "FILE"], "pack 'mine': its runs differ in depth"),
])
def test_bad_pack_input_is_one_line_exit_2_and_nothing_starts(args, message, tmp_path, capsys):
    sweep_file = tmp_path / "sweep.json"
    sweep_file.write_text(json.dumps({"runs": [
        {"preset": "short/cpu-20-w1-swapout", "seeds": [0], "pack": "mine"},
        {"preset": "short/cpu-20-w1-swapout", "seeds": [1], "overrides": {"depth": 8}, "pack": "mine",
         "name": "shallow"}]}))
    args = [str(sweep_file) if a == "FILE" else a for a in args]
    given = ["sweep", "--out", str(tmp_path / "out"), "--device", "cpu"] + \
        ([] if "--file" in args else ["--presets", "short/cpu-20-w1-resnet", "--seeds", "0,1"]) + args
    with pytest.raises(SystemExit) if args[1] == "0" else contextlib.nullcontext():  # argparse's own exit
        assert main(given) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err, err
    assert not (tmp_path / "out").exists()



@needs_data
def test_a_finished_packed_run_resumed_alone_is_reported_and_evaluated_again_gives_the_same_figures(tmp_path, capsys):
    cfgs = [_tiny(s, method="swapout", max_steps=2, epochs=1, eval_limit=20) for s in (0, 1)]
    write_pack(tmp_path / "pack", cfgs, [tmp_path / f"run-{c.seed}" for c in cfgs])
    packed = train_pack(tmp_path / "pack", progress=False, log=lambda s: None)
    run = tmp_path / "run-1"
    written = (run / "results.json").read_text()
    assert main(["train", "--resume", str(run), "--quiet"]) == 0  # finished: its results stand
    assert "results stay as they are (give --re-evaluate" in capsys.readouterr().err
    assert (run / "results.json").read_text() == written
    # evaluated again alone, the same checkpoint gives the same stochastic figures as in its pack: the masks
    # are drawn from the run's own stream, by a network in the same memory layout
    assert main(["train", "--resume", str(run), "--re-evaluate", "--quiet"]) == 0
    again = json.loads((run / "results.json").read_text())
    assert "stochastic_error" in again["splits"]["test"] and again["splits"] == packed[1]["splits"]
    # the pack extended by a step: its record and its runs' configs say where it now ends
    extended = train_pack(tmp_path / "pack", changes={"max_steps": 3}, progress=False, log=lambda s: None)
    assert [r["steps"] for r in extended] == [3, 3]
    assert [r["config"]["max_steps"] for r in json.loads((tmp_path / "pack" / "pack.json").read_text())["runs"]] \
        == [3, 3]
    assert [RunDir(tmp_path / f"run-{c.seed}").read_config()["max_steps"] for c in cfgs] == [3, 3]
