"""One report of calibration and OOD detection for deterministic and stochastic inference, with and
without temperature scaling, from logits computed once (see `swapout.evaluation.uncertainty`)."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import torch
from torch import Tensor

from .uncertainty import (
    calibration_metrics,
    cross_fit_temperature,
    entropy,
    fit_temperature,
    fold_assignment,
    mutual_information,
    ood_metrics,
    ood_scores,
    reliability_bins,
)

__all__ = ["uncertainty_report", "MODES"]

MODES = ("deterministic", "stochastic")


def _logits(split: Dict[str, Tensor], mode: str) -> Tensor:
    return split["deterministic"] if mode == "deterministic" else split["passes"]


def _count(split: Dict[str, Tensor]) -> int:
    return len(split["deterministic"]) if "deterministic" in split else split["passes"].shape[1]


def _scaled(logits: Tensor, fold: Tensor, temps: List[float]) -> Dict[str, Any]:
    """Probabilities and per-pass probabilities, each image scaled by the temperature of its fold."""
    passes = logits if logits.dim() == 3 else logits.unsqueeze(0)
    out = torch.empty(passes.shape, dtype=torch.float64)
    for k, t in enumerate(temps):
        idx = (fold == k).nonzero().squeeze(1)
        out[:, idx] = (passes[:, idx].double() / t).softmax(-1)
    return {"probs": out.mean(0), "passes": out if logits.dim() == 3 else None}


def _round(obj: Any) -> Any:
    if isinstance(obj, float):
        return round(obj, 4)
    if isinstance(obj, dict):
        return {k: _round(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_round(v) for v in obj]
    return obj


def _ood_row(p: Dict[str, Any], q: Dict[str, Any]) -> Dict[str, Any]:
    """OOD detection of the in-distribution probabilities ``p`` against the OOD ones ``q`` (as from _scaled)."""
    s_in, s_out = ood_scores(p["probs"], p["passes"]), ood_scores(q["probs"], q["passes"])
    row = {"ood": {k: ood_metrics(s_in[k], s_out[k]) for k in s_in},
           "ood_mean_entropy": entropy(q["probs"]).mean().item()}
    if q["passes"] is not None:
        row["ood_mean_mutual_information"] = mutual_information(q["passes"]).mean().item()
    return row


def uncertainty_report(test: Dict[str, Tensor], ood: Optional[Dict[str, Tensor]] = None,
                       calibration: Optional[Dict[str, Tensor]] = None, n_bins: int = 15, folds: int = 2,
                       seed: int = 0) -> Dict[str, Any]:
    """Calibration (error, NLL, Brier, ECE), OOD detection and entropies, per inference mode.

    Args:
        test: the evaluated split, as from `swapout.evaluation.errors.split_logits`: ``"labels"`` (N,),
            ``"deterministic"`` logits (N, C) and, for stochastic inference, ``"passes"`` (S, N, C).
        ood: the same for out-of-distribution images (their labels are not used), or None.
        calibration: a held-out split with the same keys to fit the temperatures on; None fits them
            by ``folds``-fold cross-fitting on ``test`` (each part scored with the temperature fitted
            on the others; OOD images are split into parts the same way).
        n_bins: equal-width confidence bins of the ECE and the reliability diagram.
        folds: number of parts of the cross-fitting (>= 2), used when ``calibration`` is None.
        seed: seed of the cross-fitting split.

    Returns:
        A JSON-ready dict (floats rounded to 4 decimals): ``"rows"``, one per mode and scaling
        (``deterministic``, ``deterministic+T``, ``stochastic``, ``stochastic+T``, for the modes ``test``
        holds) with the metrics of `calibration_metrics`, the
        temperature(s), the OOD AUROC and FPR at 95% TPR per score, and mean entropies; ``"reliability"``,
        the bins per row; ``"temperature_fit"``, how T was fitted; ``"images"`` and ``"ood_images"``, the
        numbers of test and OOD images; ``"bins"``, ``n_bins``. ``"per_image"`` (not JSON: tensors)
        holds each test image's ``"label"``, ``"prediction"``, ``"entropy"`` (predictive, nats) and
        ``"mutual_information"`` (nats) for stochastic inference (or deterministic, without passes, where
        the mutual information is 0).

    Raises:
        ValueError: if ``test`` holds neither ``"deterministic"`` logits nor ``"passes"``.
    """
    labels = test["labels"].long()
    modes = [m for m in MODES if (m == "deterministic" and "deterministic" in test) or (m == "stochastic" and
                                                                                        "passes" in test)]
    if not modes:
        raise ValueError("test holds neither deterministic logits nor stochastic passes")
    n_ood = _count(ood) if ood else 0
    zeros = (torch.zeros(len(labels), dtype=torch.long), torch.zeros(n_ood, dtype=torch.long))
    if calibration is None:
        how = f"{folds}-fold cross-fitting on the evaluated images (seed {seed})"
        ood_fold = fold_assignment(n_ood, folds, seed + 1)
    else:
        how = f"fitted on {len(calibration['labels']):,} held-out images"
    rows, reliability, per_image = {}, {}, {}
    for mode in modes:
        logits = _logits(test, mode)
        if calibration is None:
            fold, temps = cross_fit_temperature(logits, labels, folds, seed)
            scaled = ((fold, ood_fold), temps)
        else:
            scaled = (zeros, [fit_temperature(_logits(calibration, mode), calibration["labels"])])
        for name, ((f_test, f_ood), ts) in ((mode, (zeros, [1.0])), (mode + "+T", scaled)):
            p = _scaled(logits, f_test, ts)
            row: Dict[str, Any] = dict(calibration_metrics(p["probs"], labels, n_bins))
            row["temperature"] = ts if len(ts) > 1 else ts[0]
            row["mean_entropy"] = entropy(p["probs"]).mean().item()
            if p["passes"] is not None:
                row["mean_mutual_information"] = mutual_information(p["passes"]).mean().item()
            if ood:
                row.update(_ood_row(p, _scaled(_logits(ood, mode), f_ood, ts)))
            rows[name] = row
            reliability[name] = reliability_bins(p["probs"], labels, n_bins)
            if name == mode:  # unscaled: stochastic inference's values replace deterministic ones
                mi = mutual_information(p["passes"]) if p["passes"] is not None else torch.zeros(len(labels))
                per_image = {"label": labels, "prediction": p["probs"].argmax(1), "entropy": entropy(p["probs"]),
                             "mutual_information": mi.double()}
    return {**_round({"rows": rows, "reliability": reliability, "temperature_fit": how, "images": len(labels),
                      "ood_images": n_ood, "bins": n_bins}), "per_image": per_image}
