import subprocess

import pytest
import torch

import swapout.ops as ops
from swapout.kernels import fused

# torchvision and timm, for the conversion tests, come from .interop/: see the conftest.py above this folder.


class MaskRecorder:
    """Stands in for the reference sampler: records every mask it draws, or replays given masks."""

    def __init__(self, replay=None):
        self.masks = []
        self.replay = list(replay) if replay is not None else None
        self._real = ops._bernoulli

    def __call__(self, shape, theta, like, generator):
        if self.replay is not None:
            mask = self.replay.pop(0)
            assert tuple(mask.shape) == tuple(shape)
        else:
            mask = self._real(shape, theta, like, generator)
        self.masks.append(mask)
        return mask


@pytest.fixture
def record_masks(monkeypatch):
    """Route every mask through a MaskRecorder (the reference op); returns a function making one."""
    monkeypatch.setattr(fused, "_enabled", False)

    def install(replay=None):
        recorder = MaskRecorder(replay)
        monkeypatch.setattr(ops, "_bernoulli", recorder)
        return recorder

    return install


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def one_thread():
    """Run on one thread: for tiny tensors more threads only add synchronisation, a lot of it on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(params=["reference", "fused"])
def backend(request, monkeypatch):
    """Run a test once with the reference op and once with the fused kernel."""
    if request.param == "fused" and not fused.available(torch.ones(1)):
        pytest.skip("no fused CPU kernel on this machine (no C compiler)")
    monkeypatch.setattr(fused, "_enabled", request.param == "fused")
    return request.param


@pytest.fixture
def swapout_here(capsys):
    """``swapout ARGS`` run by this process, reported as a finished subprocess would be: status, stdout, stderr.
    The command's own children (a sweep's runs) are child processes all the same; another interpreter for the
    command itself would only add seconds of start-up."""
    from swapout.cli.main import main

    def run(*args: str) -> subprocess.CompletedProcess:
        try:
            code = main(list(args))
        except SystemExit as stop:  # argparse's status, or a command's own
            code = stop.code
        printed = capsys.readouterr()
        return subprocess.CompletedProcess(list(args), code, printed.out, printed.err)

    return run
