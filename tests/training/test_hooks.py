"""Hooks: called at the loop's named points, in order, without changing what is trained."""

import pytest
import torch

from swapout.runs.config import TrainConfig
from swapout.runs.rundir import read_checkpoint
from swapout.training.hooks import Hook
from swapout.training.train import train

needs_data = pytest.mark.needs_data  # skipped without CIFAR-10: see the conftest.py at the top

# 1,000 training images in batches of 100: 10 steps per epoch, 2 epochs, a checkpoint every 4 steps
TINY = dict(depth=8, val_split=49000, batch_size=100, epochs=2, checkpoint_every=4, eval_samples=2, eval_limit=50,
            seed=3, device="cpu")


class Recorder(Hook):
    def __init__(self):
        self.calls = []

    def on_start(self, training):
        self.calls.append(("start", training.state.global_step))

    def on_read(self, training, figures):
        self.calls.append(("read", training.state.global_step, figures[0].images))

    def on_epoch_end(self, training, complete):
        self.calls.append(("epoch", training.state.epoch, complete))

    def on_checkpoint(self, training):
        self.calls.append(("checkpoint", training.state.global_step))

    def on_end(self, training, results):
        self.calls.append(("end", sorted(results[0]["splits"])))


@needs_data
def test_hooks_are_called_at_each_point_in_order_and_change_nothing(tmp_path):
    hook = Recorder()
    result = train(TrainConfig(**TINY), tmp_path / "hooked", progress=False, log=lambda s: None, hooks=[hook])
    plain = train(TrainConfig(**TINY), tmp_path / "plain", progress=False, log=lambda s: None)
    kinds = [c[0] for c in hook.calls]
    assert kinds[0] == "start" and hook.calls[0][1] == 0 and kinds[-1] == "end"
    assert hook.calls[-1][1] == ["test", "val"]
    # a CPU reads its figures at every step: 20 reads, the epoch's images counted up to 1,000
    reads = [c for c in hook.calls if c[0] == "read"]
    assert [c[1] for c in reads] == list(range(1, 21)) and reads[9][2] == 1000 and reads[10][2] == 100
    assert [c for c in hook.calls if c[0] == "epoch"] == [("epoch", 0, True), ("epoch", 1, True)]
    # every 4 global steps inside an epoch (4, 8, 12, 16), and at each epoch's end (10, 20)
    assert [c[1] for c in hook.calls if c[0] == "checkpoint"] == [4, 8, 10, 12, 16, 20]
    assert kinds.index("epoch") < kinds.index("checkpoint", kinds.index("epoch"))  # metrics, then the checkpoint
    ours, theirs = (read_checkpoint(tmp_path / name / "checkpoint.pt") for name in ("hooked", "plain"))
    assert all(torch.equal(ours["model"][k], theirs["model"][k]) for k in theirs["model"])
    assert result["splits"] == plain["splits"]


def test_a_hook_must_be_a_hook(tmp_path):
    with pytest.raises(TypeError, match="Hook instances"):
        train(TrainConfig(**TINY), tmp_path / "run", progress=False, log=lambda s: None, hooks=[print])
