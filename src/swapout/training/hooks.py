"""Hooks: code of your own at the loop's named points, in the spirit of Lightning's callbacks.

Subclass `Hook`, override what you need, and pass instances to `swapout.training.train.train`
(``hooks=[...]``). Each method receives the running `swapout.training.loop.Training`: its
``cfg``, its ``state`` (epoch, step within it, global step, training time), its ``members`` (each run's
config, run directory and network) and ``model`` (the network being trained: a pack's, when packed).
Hooks run on the lead process only, and must not change the training: an exact resume replays the
same steps whatever the hooks did. A hook may end it early, with a checkpoint, by
``training.request_stop(why)`` (a pruner does: `swapout.tuning.trial_run`).

    class Saver(swapout.training.hooks.Hook):
        def on_epoch_end(self, training, complete):
            torch.save(training.model.state_dict(), f"weights-{training.state.epoch}.pt")
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence

__all__ = ["Hook", "Hooks"]


class Hook:
    """The points of the loop; every method does nothing until overridden.

    Each method receives the running `swapout.training.loop.Training` as ``training``.
    """

    def on_start(self, training: Any) -> None:
        """After setup (data, network, optimiser, resumed state), before the first step.

        Args:
            training: the running `swapout.training.loop.Training`.
        """

    def on_read(self, training: Any, figures: List[Any]) -> None:
        """After the running figures are read from the device (every step on a CPU, every 50 on a GPU).

        Args:
            training: the running `swapout.training.loop.Training`.
            figures: each run's `swapout.training.step.StepFigures` of the epoch so far.
        """

    def on_epoch_end(self, training: Any, complete: bool) -> None:
        """After each run's row of metrics.jsonl is written.

        Args:
            training: the running `swapout.training.loop.Training`.
            complete: False when the epoch was cut short (by --max-steps).
        """

    def on_checkpoint(self, training: Any) -> None:
        """After a checkpoint is written.

        Args:
            training: the running `swapout.training.loop.Training`.
        """

    def on_end(self, training: Any, results: List[Dict[str, Any]]) -> None:
        """After the final evaluation (or the stop by a signal).

        Args:
            training: the running `swapout.training.loop.Training`.
            results: each run's results, as `swapout.training.train.train` returns them.
        """


class Hooks:
    """Several hooks as one: ``call(point, training, ...)`` calls that method of each, in order.

    Args:
        hooks: the `Hook` instances, called in this order.
        lead: whether this is the lead process; hooks run on the lead process only, so with False none is
            called.

    Raises:
        TypeError: if an element of ``hooks`` is not a `Hook`.
    """

    def __init__(self, hooks: Sequence[Hook] = (), lead: bool = True):
        for hook in hooks:
            if not isinstance(hook, Hook):
                raise TypeError(f"hooks must be swapout.training.hooks.Hook instances, got {type(hook).__name__}")
        self.hooks = list(hooks) if lead else []

    def call(self, point: str, training: Any, *args: Any) -> None:
        """Call the method ``point`` of each hook, in order, with ``training`` and ``args``.

        Args:
            point: the name of a `Hook` method, e.g. ``"on_epoch_end"``.
            training: the running `swapout.training.loop.Training`.
            *args: the point's further arguments (``figures``, ``complete`` or ``results``).
        """
        for hook in self.hooks:
            getattr(hook, point)(training, *args)
