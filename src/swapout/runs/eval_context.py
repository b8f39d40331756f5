"""What every part of one ``swapout eval`` shares: the model, its data with their normalisation, the device,
where results go, the seed and whether to show progress. The parts (errors, Figure 2, uncertainty, adaptive
inference, recalibration, shift) take this one context instead of the same ten parameters each."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch
from torch import Tensor, nn

from ..data.files import MEAN, STD
from ..evaluation.errors import split_logits
from ..progress import Progress
from .config import TrainConfig

__all__ = ["EvalContext"]


@dataclass
class EvalContext:
    """One evaluation of a run's checkpoint.

    Args:
        model: the network, on ``device``, with the checkpoint's weights.
        cfg: the run's config (its dataset gives the normalisation, its preset the figures' titles).
        device: where the model runs.
        splits: ``{name: {"images", "labels", "note"}}``, the run's splits as `eval_splits` gives them.
        split: the name of the evaluated split.
        out_dir: where results are written, beside the checkpoint.
        file_name: the evaluated checkpoint's file name; results name it, and a checkpoint other than
            ``checkpoint.pt`` gives their file names a suffix.
        seed: the seed every mask of the evaluation is drawn from.
        progress: show progress bars.
        passes: stochastic passes per image (0 for a model without random masks).
    """

    model: nn.Module
    cfg: TrainConfig
    device: torch.device
    splits: Dict[str, Dict[str, Any]]
    split: str
    out_dir: Path
    file_name: str
    seed: int = 0
    progress: bool = True
    passes: int = 0
    logits: Optional[Dict[str, Tensor]] = field(default=None, repr=False)  # the evaluated split's, once computed

    @property
    def normalisation(self) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
        """Per-channel mean and standard deviation the model was trained with (0..1 scale)."""
        return MEAN[self.cfg.dataset], STD[self.cfg.dataset]

    @property
    def chosen(self) -> Dict[str, Any]:
        """The evaluated split."""
        return self.splits[self.split]

    @property
    def name(self) -> str:
        """What the figures' titles call the run."""
        return self.cfg.preset or self.cfg.model

    @property
    def stamp(self) -> Dict[str, Any]:
        """What every result records of where it came from."""
        return {"checkpoint": self.file_name, "seed": self.seed}

    @property
    def suffix(self) -> str:
        """Results of a run's own checkpoint (or final weights) are ``eval-test.json``; of another file,
        ``eval-test.<its name>.json``."""
        if self.file_name in ("checkpoint.pt", "checkpoint.prev.pt", "weights.pt"):
            return ""
        stem = Path(self.file_name).stem
        return "." + (stem[len("checkpoint."):] if stem.startswith("checkpoint.") else stem)

    def path(self, stem: str, extension: str) -> Path:
        """``OUT_DIR/<stem>-<split><suffix><extension>``."""
        return self.out_dir / f"{stem}-{self.split}{self.suffix}{extension}"

    def logits_of(self, images, labels, samples: int, label: str, model: Optional[nn.Module] = None,
                  deterministic: bool = True) -> Dict[str, Tensor]:
        """`swapout.evaluation.errors.split_logits` of ``images`` with this run's normalisation, a
        progress bar named ``label``; ``model`` instead of the context's (a recalibrated copy, say)."""
        bar = Progress(len(labels), label, unit="img", enabled=self.progress)
        mean, std = self.normalisation
        out = split_logits(model or self.model, images, labels, mean, std, self.device, samples,
                           deterministic=deterministic, progress=bar.update)
        bar.close()
        return out
