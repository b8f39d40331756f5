"""Uncertainty from swapout's ensemble: calibration, temperature scaling, entropy, mutual information, OOD.

Everything here works on logits that have already been computed (see
`swapout.evaluation.errors.split_logits`): ``(N, C)`` for one deterministic pass, ``(S, N, C)`` for S
stochastic passes. A prediction is the mean of the passes' softmax probabilities, as in the paper's
stochastic inference; temperature scaling (Guo et al., "On calibration of modern neural networks",
ICML 2017) divides every pass's logits by one temperature T before the softmax.

Units: errors and ECE in percent, NLL in nats per image, Brier score as the squared distance
between the probability vector and the one-hot label, summed over classes (0 to 2) and averaged
over images, entropies in nats.
"""

from __future__ import annotations

import importlib
import math
import traceback
from types import ModuleType
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import Tensor

__all__ = ["MetricsUnavailable", "classification_metrics", "probabilities", "calibration_metrics", "reliability_bins",
           "fit_temperature", "cross_fit_temperature", "fold_assignment", "entropy", "mutual_information",
           "ood_metrics", "ood_scores"]


class MetricsUnavailable(ImportError, ValueError):
    """torchmetrics cannot be imported here; the message says why in one line and how to fix it. A ValueError
    too, so that the command line reports it as one line with exit status 2."""


def _torchvision_fix(err: BaseException) -> str:
    """Why the torchvision that torchmetrics found fails to load, and how to fix it: one line."""
    from importlib import metadata

    try:
        version = metadata.version("torchvision")
        where = str(metadata.distribution("torchvision").locate_file("torchvision"))
    except metadata.PackageNotFoundError:
        version, where = "?", "torchvision"
    build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
    index = "cpu" if torch.version.cuda is None else "cu" + torch.version.cuda.replace(".", "")
    reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return (f"torchmetrics imports torchvision whenever it is installed, and the torchvision {version} in {where} "
            f"does not fit this torch {torch.__version__} ({build}): {reason}. Install the torchvision built for it "
            f"(pip install --force-reinstall --no-deps torchvision=={version.split('+')[0]} --index-url "
            f"https://download.pytorch.org/whl/{index}), or uninstall torchvision")


_metrics_failure: Optional[str] = None  # why torchmetrics could not be imported, once it has failed


def classification_metrics() -> ModuleType:
    """``torchmetrics.functional.classification``, or `MetricsUnavailable` saying in one line why it
    cannot be imported and how to fix that.

    torchmetrics imports torchvision whenever one is installed, and a torchvision built for another torch
    (PyPI's beside a CPU-only torch, say) fails while it loads, with ``operator torchvision::nms does not
    exist`` or a missing library; the failure is then torchvision's to fix, not torchmetrics'.
    """
    global _metrics_failure
    if _metrics_failure is None:
        try:
            return importlib.import_module("torchmetrics.functional.classification")
        except Exception as err:  # whatever a broken extension raises: RuntimeError, OSError, ImportError
            frames = [f.filename for f in traceback.extract_tb(err.__traceback__)]
            if "torchvision" in str(err) or any("torchvision" in f for f in frames):
                _metrics_failure = _torchvision_fix(err)
            else:
                reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
                _metrics_failure = (f"torchmetrics cannot be imported ({type(err).__name__}: {reason}); reinstall "
                                    f"it with pip install --force-reinstall torchmetrics")
    # a second import would find the half-loaded modules of the first and might pass: the failure stands
    raise MetricsUnavailable(_metrics_failure)


def _check(probs: Tensor, labels: Tensor) -> None:
    if probs.dim() != 2 or labels.dim() != 1 or len(probs) != len(labels) or len(labels) == 0:
        raise ValueError(f"expected probabilities (N, C) and labels (N,) with N >= 1, got shapes "
                         f"{tuple(probs.shape)} and {tuple(labels.shape)}")


def probabilities(logits: Tensor, temperature: float = 1.0) -> Tensor:
    """Predicted probabilities (N, C), float64: softmax(logits / T), averaged over passes if 3-D."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    probs = (logits.double() / temperature).softmax(-1)
    return probs.mean(0) if probs.dim() == 3 else probs


def calibration_metrics(probs: Tensor, labels: Tensor, n_bins: int = 15) -> Dict[str, float]:
    """Error (%), NLL (nats), Brier score and expected calibration error (%, ``n_bins`` equal-width bins).

    NLL clamps probabilities at 1e-300 so that a confidently wrong float64 prediction stays finite.
    The ECE is torchmetrics' ``multiclass_calibration_error`` (L1 norm).

    Args:
        probs: predicted probabilities (N, C), rows summing to 1.
        labels: true classes (N,).
        n_bins: bins of the confidence (the top probability) for the ECE.

    Returns:
        ``{"error", "nll", "brier", "ece"}``: the top-1 error (%), the mean negative log-likelihood of the
        true class (nats per image), the Brier score (0 to 2, averaged over images) and the ECE (%).

    Raises:
        MetricsUnavailable: if torchmetrics cannot be imported (see `classification_metrics`).
        ValueError: if the shapes are not (N, C) and (N,) with N >= 1.
    """
    multiclass_calibration_error = classification_metrics().multiclass_calibration_error  # slow to import: on use

    _check(probs, labels)
    labels = labels.long()
    p_true = probs.double().gather(1, labels.view(-1, 1)).squeeze(1)
    onehot = torch.nn.functional.one_hot(labels, probs.shape[1]).double()
    ece = multiclass_calibration_error(probs.float(), labels, num_classes=probs.shape[1], n_bins=n_bins, norm="l1")
    return {"error": 100.0 * (probs.argmax(1) != labels).double().mean().item(),
            "nll": -p_true.clamp_min(1e-300).log().mean().item(),
            "brier": (probs.double() - onehot).pow(2).sum(1).mean().item(),
            "ece": 100.0 * ece.item()}


def reliability_bins(probs: Tensor, labels: Tensor, n_bins: int = 15) -> Dict[str, Any]:
    """Per-bin mean confidence, accuracy and count for a reliability diagram, with the ECE (%).

    Bins are ``[k/n, (k+1)/n)`` for k = 0..n-1, a confidence of exactly 1 falling in the last one.
    Returns ``{"edges", "confidence", "accuracy", "count", "ece"}``; the ECE is that of
    `calibration_metrics`.
    """
    _check(probs, labels)
    conf, pred = probs.double().max(1)
    right = (pred == labels.long()).double()
    edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64)
    index = (torch.bucketize(conf, edges, right=True) - 1).clamp(0, n_bins - 1)
    count = torch.zeros(n_bins, dtype=torch.float64).scatter_add_(0, index, torch.ones_like(conf))
    sums = [torch.zeros(n_bins, dtype=torch.float64).scatter_add_(0, index, v) for v in (conf, right)]
    safe = count.clamp_min(1)
    return {"edges": edges.tolist(), "confidence": (sums[0] / safe).tolist(), "accuracy": (sums[1] / safe).tolist(),
            "count": count.long().tolist(), "ece": calibration_metrics(probs, labels, n_bins)["ece"]}


def _nll(logits: Tensor, labels: Tensor, temperature: float) -> float:
    return -probabilities(logits, temperature).gather(1, labels.view(-1, 1)).clamp_min(1e-300).log().mean().item()


def fit_temperature(logits: Tensor, labels: Tensor, low: float = 0.05, high: float = 20.0, steps: int = 40) -> float:
    """The temperature T in [low, high] that minimises the NLL of `probabilities` on these images.

    The search is a golden-section search over log T in [log low, log high]; 40 steps narrow it to 1e-8 of
    its width.

    Args:
        logits: (N, C) for one pass, or (S, N, C) for stochastic passes (T then divides every
            pass's logits, and the NLL is that of the mean of the passes' softmax).
        labels: true classes (N,).
        low: the smallest temperature searched, > 0.
        high: the largest temperature searched, > ``low``.
        steps: number of golden-section steps.

    Returns:
        The fitted temperature T (the midpoint, in log T, of the final interval).

    Raises:
        ValueError: if not ``0 < low < high``, or the shapes of ``logits`` and ``labels`` do not match
            ((N, C) or (S, N, C) and (N,), N >= 1).
    """
    if not 0 < low < high:
        raise ValueError(f"need 0 < low < high, got {low} and {high}")
    labels = labels.long()
    _check(logits[0] if logits.dim() == 3 else logits, labels)
    a, b = math.log(low), math.log(high)
    ratio = (math.sqrt(5) - 1) / 2
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = _nll(logits, labels, math.exp(c)), _nll(logits, labels, math.exp(d))
    for _ in range(steps):
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = _nll(logits, labels, math.exp(c))
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = _nll(logits, labels, math.exp(d))
    return math.exp((a + b) / 2)


def fold_assignment(n: int, folds: int, seed: int = 0) -> Tensor:
    """A random part 0..folds-1 for each of ``n`` images, parts of equal size (give or take one), seeded."""
    fold = torch.empty(n, dtype=torch.long)
    fold[torch.randperm(n, generator=torch.Generator().manual_seed(seed))] = torch.arange(n) % folds
    return fold


def cross_fit_temperature(logits: Tensor, labels: Tensor, folds: int = 2, seed: int = 0) -> Tuple[Tensor, List[float]]:
    """Temperature scaling without a separate calibration split: k-fold cross-fitting.

    The images are split into ``folds`` random parts of equal size (seeded); part k is to be scored
    with the temperature fitted on the other parts.

    Args:
        logits: (N, C) for one pass, or (S, N, C) for stochastic passes, as in `fit_temperature`.
        labels: true classes (N,).
        folds: number of parts k, >= 2.
        seed: seed of the random split into parts (see `fold_assignment`).

    Returns:
        A pair ``(fold, temperatures)``: the part of each image, a long tensor (N,) with values in
        0..folds-1, and the temperatures, one per part (that of part k fitted on all the other parts).

    Raises:
        ValueError: if ``folds`` < 2.
    """
    if folds < 2:
        raise ValueError(f"folds must be >= 2, got {folds}")
    fold = fold_assignment(len(labels), folds, seed)
    dim = 1 if logits.dim() == 3 else 0
    temps = [fit_temperature(logits.index_select(dim, (fold != k).nonzero().squeeze(1)), labels[fold != k])
             for k in range(folds)]
    return fold, temps


def entropy(probs: Tensor) -> Tensor:
    """Entropy (nats) of each row of ``probs`` (..., C); 0 * log 0 counts as 0.

    Args:
        probs: probabilities of shape (..., C), each row summing to 1.

    Returns:
        The entropy in nats, float64, of shape (...): ``probs`` without its last dimension.
    """
    p = probs.double()
    return -(p * p.clamp_min(1e-300).log()).sum(-1)


def mutual_information(pass_probs: Tensor) -> Tensor:
    """Mutual information (nats) between the prediction and the masks, per image (BALD).

    The entropy of the mean prediction minus the mean entropy of the passes: the part of the predictive
    entropy that comes from disagreement between the ensemble's members (Houlsby et al. 2011; Gal 2016).

    Args:
        pass_probs: the S stochastic passes' probabilities, shape (S, N, C).

    Returns:
        The mutual information in nats, float64, shape (N,), clamped at 0.

    Raises:
        ValueError: if ``pass_probs`` is not 3-D.
    """
    if pass_probs.dim() != 3:
        raise ValueError(f"pass_probs must have shape (S, N, C), got {tuple(pass_probs.shape)}")
    return (entropy(pass_probs.double().mean(0)) - entropy(pass_probs).mean(0)).clamp_min(0)


def ood_scores(probs: Tensor, pass_probs: Optional[Tensor] = None) -> Dict[str, Tensor]:
    """Scores of being in-distribution (higher = more typical of the training data), per image.

    ``max_probability`` (Hendrycks and Gimpel 2017), ``entropy`` (negated predictive entropy) and,
    given the passes (S, N, C), ``mutual_information`` (negated).
    """
    scores = {"max_probability": probs.double().max(-1).values, "entropy": -entropy(probs)}
    if pass_probs is not None:
        scores["mutual_information"] = -mutual_information(pass_probs)
    return scores


def ood_metrics(in_scores: Tensor, out_scores: Tensor) -> Dict[str, float]:
    """AUROC (%) and FPR (%) at 95% TPR of telling in-distribution images (positives) from OOD ones.

    FPR at 95% TPR is the share of OOD images accepted when the threshold keeps at least 95% of the
    in-distribution images. Both come from torchmetrics (``binary_auroc``, ``binary_roc``), computed on
    the ranks of the scores so that ties are kept.

    Args:
        in_scores: scores of the in-distribution images (M,), higher meaning more in-distribution
            (see `ood_scores`).
        out_scores: scores of the out-of-distribution images (K,), on the same scale.

    Returns:
        ``{"auroc", "fpr95"}``: the area under the ROC curve (%) and the false-positive rate (%) at 95%
        true-positive rate.

    Raises:
        MetricsUnavailable: if torchmetrics cannot be imported (see `classification_metrics`).
        ValueError: if either set of scores is empty.
    """
    metrics = classification_metrics()
    binary_auroc, binary_roc = metrics.binary_auroc, metrics.binary_roc

    if len(in_scores) == 0 or len(out_scores) == 0:
        raise ValueError("ood_metrics needs at least one in-distribution and one OOD score")
    # Ranks in [0, 1] (ties kept): torchmetrics would squash scores outside [0, 1] with a sigmoid in
    # float32, which merges the scores of the most confident images into ties.
    values, rank = torch.unique(torch.cat([in_scores, out_scores]).double(), return_inverse=True)
    scores = rank.double() / max(len(values) - 1, 1)
    target = torch.cat([torch.ones(len(in_scores)), torch.zeros(len(out_scores))]).long()
    fpr, tpr, _ = binary_roc(scores, target)
    return {"auroc": 100.0 * binary_auroc(scores, target).item(),
            "fpr95": 100.0 * fpr[tpr >= 0.95].min().item()}
