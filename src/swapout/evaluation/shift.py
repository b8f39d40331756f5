"""Uncertainty under dataset shift: calibration of a model on corrupted test sets, severity by severity.

Ovadia et al. ("Can you trust your model's uncertainty? Evaluating predictive uncertainty under
dataset shift", NeurIPS 2019) measured how error, NLL, Brier score and ECE grow with the severity of
CIFAR-10-C's corruptions, for temperature scaling, MC dropout and deep ensembles among others.
`evaluate_shift` makes the same measurement for any classifier that `swapout.predict`
accepts, on corrupted copies of the given images (`swapout.data.shifted`), in four modes:

* ``deterministic``: one pass, masks replaced by their expectation;
* ``deterministic+T``: the same logits divided by a temperature fitted on clean held-out images;
* ``stochastic``: the mean softmax of ``samples`` passes with masks sampled;
* ``stochastic+T``: the same with its own temperature (dividing every pass's logits).

Temperatures are fitted as a user would, on clean images only: on the given held-out images
(``calibration``), or else by 2-fold cross-fitting on the clean copies of the evaluated images
(each image's corrupted copies are scored with the temperature fitted on the other half's clean
copies). Metrics come from `swapout.evaluation.uncertainty.calibration_metrics`; every error carries a
95% Wilson interval, and the per-severity means over corruptions carry 95% bootstrap intervals
(images resampled, the same resample for every corruption and mode, so differences are paired).
"""

from __future__ import annotations

import functools
import hashlib
import os
import zlib
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor, nn

from ..cache import cache_dir
from ..data.corruptions import BENCHMARK, SEVERITIES, check_corruptions, check_severities
from ..data.files import MEAN, STD
from ..data.shifted import images_digest, shifted_images
from ..progress import Progress
from .errors import has_random_masks, split_logits
from .shift_report import (
    METRICS,
    MODES,
    bootstrap_means,
    error_halfwidth,
    intervals_note,
    plot_shift,
    shift_table,
    wilson_interval,
)
from .uncertainty import calibration_metrics, cross_fit_temperature, fit_temperature, probabilities

__all__ = ["evaluate_shift", "plot_shift", "shift_table", "wilson_interval", "bootstrap_means", "MODES",
           "error_halfwidth"]

SETS = "corrupted copies generated in the manner of CIFAR-10-C (Hendrycks and Dietterich 2019), not the published files"


def _one_thread(fn):
    """Run ``fn`` on one thread: metrics of a few thousand numbers gain nothing from more, and on a busy
    machine every small operation would wait for the others (tens of milliseconds each)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return fn(*args, **kwargs)
        finally:
            torch.set_num_threads(threads)
    return wrapper


def _model_digest(model: nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def _logits(model, images, labels, mean, std, device, samples, rng_key: int, path: Optional[Path], bar) -> Dict:
    """Deterministic logits and ``samples`` passes on one set, the masks seeded by ``rng_key``; read from
    ``path`` if there, else computed and saved there (atomically), so that an interrupted study resumes."""
    if path is not None:  # named by the set's own digest too: a set that a changed corruption replaced is not reused
        path = path.with_name(f"{path.stem}-{images_digest(images)[:16]}{path.suffix}")
    if path is not None and path.exists():
        try:
            out = torch.load(path, weights_only=True)
            bar.update(len(labels))
            return out
        except Exception:  # a damaged file: compute again
            pass
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(rng_key)
        out = split_logits(model, images, labels, mean, std, device, samples, progress=bar.update)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        torch.save(out, tmp)
        os.replace(tmp, path)
    return out


def _temperatures(clean: Dict, calibration: Optional[Dict], stochastic: bool, seed: int) -> Dict[str, Dict]:
    """Per base mode: ``{"fold": (N,) part of each evaluated image or None, "values": [T per part], "how"}``."""
    out: Dict[str, Dict[str, Any]] = {}
    for mode, key in (("deterministic", "deterministic"), ("stochastic", "passes")):
        if mode == "stochastic" and not stochastic:
            continue
        if calibration is not None:
            t = fit_temperature(calibration[key], calibration["labels"])
            out[mode] = {"fold": None, "values": [t],
                         "how": f"fitted on {len(calibration['labels']):,} clean held-out images"}
        else:
            fold, temps = cross_fit_temperature(clean[key], clean["labels"], folds=2, seed=seed)
            out[mode] = {"fold": fold, "values": temps, "how": "2-fold cross-fitting on the clean copies of the "
                         "evaluated images (each image scored with the temperature of the other half)"}
    return out


def _probs(logits: Tensor, temp: Optional[Dict]) -> Tensor:
    if temp is None:
        return probabilities(logits)
    if temp["fold"] is None:
        return probabilities(logits, temp["values"][0])
    dim = 1 if logits.dim() == 3 else 0
    out = torch.empty(logits.shape[dim], logits.shape[-1], dtype=torch.float64)
    for k, t in enumerate(temp["values"]):
        idx = (temp["fold"] == k).nonzero().squeeze(1)
        out[idx] = probabilities(logits.index_select(dim, idx), t)
    return out


def _mode_probs(logits: Dict, temps: Dict) -> Dict[str, Tensor]:
    out = {"deterministic": _probs(logits["deterministic"], None),
           "deterministic+T": _probs(logits["deterministic"], temps["deterministic"])}
    if "stochastic" in temps:
        out["stochastic"] = _probs(logits["passes"], None)
        out["stochastic+T"] = _probs(logits["passes"], temps["stochastic"])
    return out


@_one_thread
def _metrics(probs: Tensor, labels: Tensor) -> Dict[str, Any]:
    m: Dict[str, Any] = {k: round(v, 5) for k, v in calibration_metrics(probs, labels).items()}
    m["error_interval"] = wilson_interval(int((probs.argmax(1) != labels).sum()), len(labels))
    return m


@_one_thread
def _summarise(cells: Sequence[Dict[str, Dict]]) -> Dict[str, Dict]:
    return {mode: {k: round(float(np.mean([c[mode][k] for c in cells])), 5) for k in METRICS} for mode in cells[0]}


def _as_logits(model, given, mean, std, device, samples, label, bar_on, seed: int) -> Optional[Dict]:
    """Logits of ``given`` images, their masks seeded from ``seed``: the temperatures fitted on them must
    not depend on what drew from the global generator before."""
    if given is None or isinstance(given, dict):
        return given
    images, labels = given
    bar = Progress(len(labels), label, unit="img", enabled=bar_on)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed * 1_000_003 + zlib.crc32(b"calibration"))
        out = split_logits(model, images, labels, mean, std, device, samples, progress=bar.update)
    bar.close()
    return out


def evaluate_shift(model: nn.Module, images: np.ndarray, labels: np.ndarray, *, dataset: str = "cifar10",
                   mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None,
                   corruptions: Sequence[str] = BENCHMARK, severities: Sequence[int] = SEVERITIES, samples: int = 10,
                   seed: int = 0, calibration: Union[Tuple[np.ndarray, np.ndarray], Dict[str, Tensor], None] = None,
                   clean: Optional[Dict] = None, device: Union[str, torch.device] = "cpu", cache: bool = True,
                   resamples: int = 200, progress: bool = True, keep_probs: bool = False) -> Dict[str, Any]:
    """Error, NLL, Brier and ECE of ``model`` on corrupted copies of ``images``, per corruption and severity.

    Args:
        model: a classifier of normalised (N, 3, H, W) images, as `swapout.predict` takes.
        images: clean uint8 images (N, H, W, 3).
        labels: their classes (N,).
        dataset: names the cached sets and the default normalisation (``"cifar10"`` or ``"cifar100"``).
        mean: the per-channel mean of the input normalisation (0..1 scale); None: the dataset's.
        std: the per-channel standard deviation of the input normalisation (0..1 scale); None: the dataset's.
        corruptions: the corruptions of the grid (default: the 14 benchmark corruptions).
        severities: the severities of the grid, each in 1-5 (default: all five).
        samples: stochastic passes; 0 evaluates deterministic inference only. A model without random
            masks (a plain ResNet) must use 0: its passes would all be the deterministic one.
        seed: seeds the corruptions, every set's masks (held-out images' too) and the folds: one seed, one result.
        calibration: clean held-out images for the temperatures, as ``(images, labels)`` or as logits
            ``{"labels", "deterministic", "passes"}``; None: 2-fold cross-fitting on ``images``.
        clean: the logits of the clean ``images`` if already computed (same keys).
        device: where to run the model (e.g. ``"cpu"``, ``"cuda"``).
        cache: keep the corrupted sets and every set's logits under the cache directory, so that a
            repeated or interrupted evaluation reuses them.
        resamples: bootstrap resamples for the per-severity intervals (0: none).
        progress: show a progress bar on the terminal.
        keep_probs: also return every set's probabilities under ``"probs"`` (severity -> [mode -> (N, C)]).

    Returns:
        A dict: ``settings``, ``temperature`` (base mode -> fitted values and how), ``clean`` (mode -> metrics),
        ``corrupted`` (corruption -> severity -> mode -> metrics), ``summary`` (severity, "0" for clean -> mode
        -> mean metrics over corruptions, with bootstrap intervals), ``intervals`` (what the sample sizes
        allow), and ``probs`` with ``keep_probs``. The metrics are those of
        `swapout.evaluation.uncertainty.calibration_metrics` with the error's 95% Wilson interval.

    Raises:
        ValueError: if a corruption or severity is unknown, repeated or none is given, ``samples`` is not an
            integer >= 0, ``samples`` > 0 for a model without random masks, or there are fewer than 2 images
            or not one label per image.
    """
    corruptions, severities = check_corruptions(list(corruptions)), check_severities(list(severities))
    _check(model, images, labels, samples)
    mean, std = mean or MEAN[dataset], std or STD[dataset]
    root = cache_dir() / "shift" / "logits" / f"{_model_digest(model)}-{images_digest(images)[:16]}" if cache else None
    def run(imgs, key, *parts):
        path = None if root is None else root / ("-".join(map(str, parts)) + f"-{samples}.pt")
        return _logits(model, imgs, labels, mean, std, device, samples, key, path, bar)
    bar = Progress(len(labels) * (1 + len(corruptions) * len(severities)), f"clean and corrupted sets "
                   f"({len(corruptions)} x {len(severities)}, {samples} passes)", unit="img", enabled=progress)
    if clean is None:
        clean = run(images, seed, "clean", seed)
    else:
        bar.update(len(labels))
    calibration = _as_logits(model, calibration, mean, std, device, samples, "held-out clean images", progress, seed)
    y = clean["labels"]
    temps = _temperatures(clean, calibration, bool(samples), seed)
    clean_probs = _mode_probs(clean, temps)
    result: Dict[str, Any] = {"clean": {m: _metrics(p, y) for m, p in clean_probs.items()}, "corrupted": {}}
    per_severity: Dict[int, list] = {s: [] for s in severities}
    for c in corruptions:
        result["corrupted"][c] = {}
        for s in severities:
            probs = _mode_probs(run(shifted_images(images, c, s, seed, dataset, cache=cache),
                                    seed * 1_000_003 + zlib.crc32(c.encode()) + s, c, s, seed), temps)
            per_severity[s].append(probs)
            result["corrupted"][c][str(s)] = {m: _metrics(p, y) for m, p in probs.items()}
    bar.close()
    result["summary"] = _summary(result, clean_probs, per_severity, y, corruptions, resamples, seed)
    result["temperature"] = {m: {"values": [round(t, 5) for t in v["values"]], "how": v["how"]}
                             for m, v in temps.items()}
    result["settings"] = dict(dataset=dataset, images=len(labels), samples=samples, seed=seed, bootstrap=resamples,
                              corruptions=list(corruptions), severities=list(severities), sets=SETS)
    result["intervals"] = intervals_note(len(labels))
    if keep_probs:
        result["probs"] = {0: [clean_probs], **per_severity}
    return result


def _check(model: nn.Module, images, labels, samples) -> None:
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 0:
        raise ValueError(f"samples must be an integer >= 0, got {samples!r}")
    if samples and not has_random_masks(model):
        raise ValueError("this model has no random masks, so stochastic inference equals deterministic inference; "
                         "ask for deterministic figures only (samples=0)")
    if len(images) != len(labels) or len(labels) < 2:
        raise ValueError(f"need at least 2 images with one label each, got {len(images)} images, {len(labels)} labels")


def _summary(result, clean_probs, per_severity, y, corruptions, resamples, seed) -> Dict[str, Dict]:
    boot = bootstrap_means([clean_probs], y, resamples, seed)
    out = {"0": {m: {**v, **boot.get(m, {})} for m, v in result["clean"].items()}}
    for s, cells in per_severity.items():
        mean_metrics = _summarise([result["corrupted"][c][str(s)] for c in corruptions])
        boot = bootstrap_means(cells, y, resamples, seed + s)
        out[str(s)] = {m: {**v, **boot.get(m, {})} for m, v in mean_metrics.items()}
    return out


