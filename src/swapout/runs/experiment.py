"""What a run's config means, shared by training and ``swapout eval``: the model and the evaluated splits."""

from __future__ import annotations

from typing import Any, Dict, Optional

from torch import nn

from ..data.files import NUM_CLASSES, Split
from ..models import create_model
from .config import TrainConfig

__all__ = ["build_model", "eval_splits"]


def build_model(cfg: TrainConfig) -> nn.Module:
    """The network ``cfg`` describes, freshly initialised on the CPU; ValueError for a bad config."""
    join = cfg.validate().join()  # parses the schedules, once
    return create_model(cfg.model, depth=cfg.depth, width=cfg.width, num_classes=NUM_CLASSES[cfg.dataset], join=join)


def eval_splits(cfg: TrainConfig, train: Split, test: Optional[Split]) -> Dict[str, Dict[str, Any]]:
    """The splits a run reports on: the held-out part of the training set (if any) and the test set (unless
    ``test`` is None: a search, which must not see it).

    Returns ``{name: {"images", "labels", "note"}}``. Only exact test images are used; the note says
    how many and why.
    """
    splits: Dict[str, Dict[str, Any]] = {}
    if cfg.val_split:
        splits["val"] = {"images": train.images[-cfg.val_split:], "labels": train.labels[-cfg.val_split:],
                         "note": f"last {cfg.val_split:,} training images, held out"}
    if test is not None:
        exact = test.exact
        note = f"{int(exact.sum()):,} test images"
        if not exact.all():
            note = f"{int(exact.sum()):,} exact test images ({int((~exact).sum())} approximate ones excluded)"
        splits["test"] = {"images": test.images[exact], "labels": test.labels[exact], "note": note}
    if cfg.eval_limit:
        for s in splits.values():
            if len(s["labels"]) > cfg.eval_limit:
                s["images"], s["labels"] = s["images"][:cfg.eval_limit], s["labels"][:cfg.eval_limit]
                s["note"] += f", first {cfg.eval_limit:,} only"
    return splits
