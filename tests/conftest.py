import pytest
import torch

import swapout.ops as ops


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
    """Route every reference-path mask through a MaskRecorder; returns a function making one."""

    def install(replay=None):
        recorder = MaskRecorder(replay)
        monkeypatch.setattr(ops, "_bernoulli", recorder)
        return recorder

    return install


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
