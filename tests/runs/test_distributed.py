"""torchrun with two CPU processes (gloo): equal to one process on the same global batch; presets whose joins leave
parameters unused train; a dead rank ends the run."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from swapout.data.files import MEAN, STD, load_split
from swapout.data.pipeline import TrainLoader
from swapout.layers import SkipForward, SwapoutJoin
from swapout.runs.config import TrainConfig, list_presets, load_preset
from swapout.runs.experiment import build_model
from swapout.runs.rundir import read_checkpoint
from swapout.training.step import prepare_model

needs_data = pytest.mark.needs_data  # skipped without CIFAR-10: see the conftest.py at the top

CFG = dict(depth=8, method="resnet", val_split=49000, batch_size=32, epochs=2, eval_samples=0, eval_limit=100,
           seed=3, device="cpu", max_steps=6)


def _torchrun(args, nproc=2, env=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
                             "--standalone", "-m", "swapout.cli", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _flags(cfg):
    return [a for k, v in cfg.items() for a in (f"--{k.replace('_', '-')}", str(v))] + ["--quiet"]


@needs_data
def test_two_processes_equal_one_process_with_the_same_global_batch(tmp_path):
    run = tmp_path / "ddp"
    proc = _torchrun(["train", *_flags(CFG), "--out", str(run)])
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    ddp = read_checkpoint(run / "checkpoint.pt")["model"]

    # One process, the same global batches of 32: each rank's half is a micro-batch with its own
    # BatchNorm statistics (as in data-parallel training without SyncBatchNorm), and the gradients
    # of the halves are averaged, which is what DistributedDataParallel's all-reduce computes.
    cfg = TrainConfig(**CFG)
    train = load_split("cifar10", "train")
    n = 50_000 - cfg.val_split
    halves = [TrainLoader(train.images[:n], train.labels[:n], cfg.batch_size, MEAN["cifar10"], STD["cifar10"],
                          "cpu", cfg.seed, rank=r, world_size=2) for r in (0, 1)]
    torch.manual_seed(cfg.seed)
    model = prepare_model(build_model(cfg))  # the layout training uses: its convolutions round their own way
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    streams = [h.batches(0) for h in halves]
    threads = torch.get_num_threads()
    # one thread, like each worker: a few steps at lr 0.1 amplify the last-bit differences between
    # thread counts to about 1e-3 (measured), while the same thread count agrees to the bit
    torch.set_num_threads(1)
    try:
        for _ in range(cfg.max_steps):
            opt.zero_grad()
            for stream in streams:
                x, y = next(stream)
                (F.cross_entropy(model(x.contiguous(memory_format=torch.channels_last)), y) / 2).backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    single = model.state_dict()
    params = [name for name, _ in model.named_parameters()]
    assert params and set(params) <= set(ddp)
    for name in params:
        torch.testing.assert_close(ddp[name], single[name], rtol=1e-4, atol=1e-5, msg=name)
    moved = max((single[name] - build_model_initial(cfg)[name]).abs().max().item() for name in params)
    assert moved > 1e-3  # the comparison is not between two untrained models


# The presets' joins at the depth and width trained below: the same schedules over fewer blocks, so
# the first block's theta is still 1 and the group changes still have projection shortcuts.
SMALL = dict(depth=8, width=1)


def _leaves_terms_out(model) -> bool:
    """Whether some join of ``model`` never uses one of its inputs, so the layers behind it get no gradient."""
    for m in model.modules():
        if isinstance(m, SkipForward) and m.thetas[0] in (0.0, 1.0):
            return True
        if isinstance(m, SwapoutJoin) and not isinstance(m, SkipForward) and 0.0 in m.thetas:
            return True
    return False


UNUSED_PRESETS = [name for name in list_presets()
                  if _leaves_terms_out(build_model(TrainConfig.from_dict({**load_preset(name), **SMALL})))]


def test_the_presets_that_leave_parameters_unused_are_known():
    # the test below covers every such preset; a new one joins it by itself, and this says so
    assert UNUSED_PRESETS == ["table1/dropout-v2-w2", "table1/skipforward-v2-w2"]


# which weights each such preset's joins leave out, at the size trained below
LEFT_OUT = {"table1/dropout-v2-w2": lambda name: ".shortcut." in name,  # theta1 = 0: no X term
            "table1/skipforward-v2-w2": lambda name: name.startswith("blocks.0.")}  # theta = 1: X only


@needs_data
@pytest.mark.parametrize("preset", UNUSED_PRESETS)
def test_presets_whose_joins_leave_parameters_unused_train_data_parallel(tmp_path, preset):
    # SWAPOUT_FUSED=0: the reference op leaves out the terms whose theta is 0, as SkipForward does
    # where theta is 1; DistributedDataParallel fails at the second step unless it expects that
    run = tmp_path / "run"
    cfg = {**{k: v for k, v in CFG.items() if k != "method"}, **SMALL, "batch_size": 16, "max_steps": 3,
           "eval_limit": 20}
    proc = _torchrun(["train", "--preset", preset, *_flags(cfg), "--out", str(run)], env={"SWAPOUT_FUSED": "0"})
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    ckpt = read_checkpoint(run / "checkpoint.pt")
    assert ckpt["state"]["global_step"] == 3
    initial = build_model_initial(TrainConfig.from_dict({**load_preset(preset), **cfg}))
    weights = [name for name in initial if name.endswith(".weight")]
    unchanged = {name for name in weights if torch.equal(ckpt["model"][name], initial[name])}
    # the layers left out kept their initial weights (no gradient, so no weight decay either, as in
    # one process); every other weight trained
    assert unchanged and unchanged == {name for name in weights if LEFT_OUT[preset](name)}, unchanged


def build_model_initial(cfg):
    torch.manual_seed(cfg.seed)
    return build_model(cfg).state_dict()


def _children(pid: int):
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        out += [int(p) for p in text]
    return out


@needs_data
@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc to find the workers")
def test_killing_one_rank_ends_the_other_within_60_seconds(tmp_path):
    run = tmp_path / "run"
    cfg = {**CFG, "max_steps": 100000, "epochs": 1000, "checkpoint_every": 2}
    proc = _torchrun(["train", *_flags(cfg), "--out", str(run)])
    deadline = time.time() + 300
    while not (run / "checkpoint.pt").exists():  # both ranks are training
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read()[-3000:]
        time.sleep(0.1)
    workers = _children(proc.pid)
    assert len(workers) == 2
    os.kill(workers[1], signal.SIGKILL)
    killed = time.time()
    proc.wait(timeout=120)
    ended = time.time() - killed
    assert ended < 60, ended
    assert proc.returncode != 0
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
