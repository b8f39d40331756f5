"""Uncertainty under dataset shift: calibration of a model on corrupted test sets, severity by severity.

Ovadia et al. ("Can you trust your model's uncertainty? Evaluating predictive uncertainty under
dataset shift", NeurIPS 2019) measured how error, NLL, Brier score and ECE grow with the severity of
CIFAR-10-C's corruptions, for temperature scaling, MC dropout and deep ensembles among others.
:func:`evaluate_shift` makes the same measurement for any classifier that :func:`swapout.predict`
accepts, on corrupted copies of the given images (:mod:`swapout.shifted_data`), in four modes:

* ``deterministic``: one pass, masks replaced by their expectation;
* ``deterministic+T``: the same logits divided by a temperature fitted on clean held-out images;
* ``stochastic``: the mean softmax of ``samples`` passes with masks sampled;
* ``stochastic+T``: the same with its own temperature (dividing every pass's logits).

Temperatures are fitted as a user would, on clean images only: on the given held-out images
(``calibration``), or else by 2-fold cross-fitting on the clean copies of the evaluated images
(each image's corrupted copies are scored with the temperature fitted on the other half's clean
copies). Metrics come from :func:`swapout.uncertainty.calibration_metrics`; every error carries a
95% Wilson interval, and the per-severity means over corruptions carry 95% bootstrap intervals
(images resampled, the same resample for every corruption and mode, so differences are paired).
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import zlib
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from .cache import cache_dir
from .corruptions import BENCHMARK, SEVERITIES, check_corruptions, check_severities
from .data import MEAN, STD
from .evaluate import has_random_masks, split_logits
from .progress import Progress
from .shifted_data import images_digest, shifted_images
from .uncertainty import calibration_metrics, cross_fit_temperature, fit_temperature, probabilities

__all__ = ["evaluate_shift", "plot_shift", "shift_table", "wilson_interval", "bootstrap_means", "MODES",
           "error_halfwidth"]

MODES = ("deterministic", "deterministic+T", "stochastic", "stochastic+T")
METRICS = ("error", "nll", "brier", "ece")
Z95 = 1.959964
SETS = "corrupted copies generated in the manner of CIFAR-10-C (Hendrycks and Dietterich 2019), not the published files"


def wilson_interval(errors: int, n: int, z: float = Z95) -> list:
    """95% Wilson score interval (%, low and high) of an error rate seen as ``errors`` of ``n``."""
    p = errors / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return [round(100 * max(centre - half, 0.0), 3), round(100 * min(centre + half, 1.0), 3)]


def error_halfwidth(n: int, p: float = 0.5) -> float:
    """Half-width (percentage points) of the normal 95% interval of an error rate ``p`` measured on ``n`` images."""
    return 100 * Z95 * math.sqrt(p * (1 - p) / n)


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
    out = {}
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
    m = {k: round(v, 5) for k, v in calibration_metrics(probs, labels).items()}
    m["error_interval"] = wilson_interval(int((probs.argmax(1) != labels).sum()), len(labels))
    return m


@_one_thread
def bootstrap_means(cells: Sequence[Dict[str, Tensor]], labels: Tensor, resamples: int = 200, seed: int = 0,
                    reference: str = "stochastic") -> Dict[str, Dict]:
    """95% bootstrap intervals of the mean over ``cells`` (one dict mode -> probabilities (N, C) per
    corruption, all on the same images) of every metric of every mode, and of each mode's difference
    from ``reference`` if present (paired: one resample of the images serves every cell and mode).

    The intervals are basic (reflected) bootstrap intervals, 2 * estimate - the 97.5% and 2.5% quantiles:
    resampling with replacement inflates the ECE of a resample, and reflecting corrects that bias.
    """
    if resamples <= 0:
        return {}
    gen = torch.Generator().manual_seed(seed)
    n, modes = len(labels), list(cells[0])

    def means(idx):
        return torch.tensor([[[calibration_metrics(c[m][idx], labels[idx])[k] for k in METRICS] for c in cells]
                             for m in modes], dtype=torch.float64).mean(1)  # (modes, metrics)

    estimate = means(torch.arange(n))
    draws = torch.stack([means(torch.randint(n, (n,), generator=gen)) for _ in range(resamples)])
    probs = torch.tensor([0.975, 0.025], dtype=torch.float64)

    def basic(est, d):
        return [round(v, 5) for v in (2 * est - torch.quantile(d, probs)).tolist()]

    out = {}
    for j, mode in enumerate(modes):
        out[mode] = {f"{k}_interval": basic(estimate[j, i], draws[:, j, i]) for i, k in enumerate(METRICS)}
        if reference in modes and mode != reference:
            r = modes.index(reference)
            out[mode].update({f"{k}_minus_{reference}_interval": basic(estimate[j, i] - estimate[r, i],
                                                                        draws[:, j, i] - draws[:, r, i])
                              for i, k in enumerate(METRICS)})
    return out


def _summarise(cells: Sequence[Dict[str, Dict]]) -> Dict[str, Dict]:
    return {mode: {k: round(float(np.mean([c[mode][k] for c in cells])), 5) for k in METRICS} for mode in cells[0]}


def _as_logits(model, given, mean, std, device, samples, label, bar_on) -> Optional[Dict]:
    if given is None or isinstance(given, dict):
        return given
    images, labels = given
    bar = Progress(len(labels), label, unit="img", enabled=bar_on)
    out = split_logits(model, images, labels, mean, std, device, samples, progress=bar.update)
    bar.close()
    return out


def evaluate_shift(model: nn.Module, images: np.ndarray, labels: np.ndarray, *, dataset: str = "cifar10",
                   mean=None, std=None, corruptions: Sequence[str] = BENCHMARK,
                   severities: Sequence[int] = SEVERITIES, samples: int = 10, seed: int = 0,
                   calibration=None, clean: Optional[Dict] = None, device="cpu", cache: bool = True,
                   resamples: int = 200, progress: bool = True, keep_probs: bool = False) -> Dict[str, Any]:
    """Error, NLL, Brier and ECE of ``model`` on corrupted copies of ``images``, per corruption and severity.

    Args:
        model: a classifier of normalised (N, 3, H, W) images, as :func:`swapout.predict` takes.
        images, labels: clean uint8 images (N, H, W, 3) and their classes.
        dataset: names the cached sets; ``mean``, ``std``: the input normalisation (default: the dataset's).
        corruptions, severities: the grid (default: the 14 benchmark corruptions x severities 1-5).
        samples: stochastic passes; 0 evaluates deterministic inference only. A model without random
            masks (a plain ResNet) must use 0: its passes would all be the deterministic one.
        seed: seeds the corruptions, the masks and the cross-fitting folds.
        calibration: clean held-out images for the temperatures, as ``(images, labels)`` or as logits
            ``{"labels", "deterministic", "passes"}``; None: 2-fold cross-fitting on ``images``.
        clean: the logits of the clean ``images`` if already computed (same keys).
        cache: keep the corrupted sets and every set's logits under the cache directory, so that a
            repeated or interrupted evaluation reuses them.
        resamples: bootstrap resamples for the per-severity intervals (0: none).
        keep_probs: also return every set's probabilities under ``"probs"`` (severity -> [mode -> (N, C)]).

    Returns a dict: ``settings``, ``temperature``, ``clean`` (mode -> metrics), ``corrupted``
    (corruption -> severity -> mode -> metrics), ``summary`` (severity, "0" for clean -> mode -> mean
    metrics over corruptions, with bootstrap intervals), ``intervals`` (what the sample sizes allow).
    """
    corruptions, severities = check_corruptions(list(corruptions)), check_severities(list(severities))
    _check(model, images, labels, samples)
    mean, std = mean or MEAN[dataset], std or STD[dataset]
    root = cache_dir() / "shift" / "logits" / f"{_model_digest(model)}-{images_digest(images)[:16]}" if cache else None
    run = lambda imgs, key, *parts: _logits(model, imgs, labels, mean, std, device, samples, key, None if root is None
                                            else root / ("-".join(map(str, parts)) + f"-{samples}.pt"), bar)
    bar = Progress(len(labels) * (1 + len(corruptions) * len(severities)), f"clean and corrupted sets "
                   f"({len(corruptions)} x {len(severities)}, {samples} passes)", unit="img", enabled=progress)
    clean = run(images, seed, "clean", seed) if clean is None else bar.update(len(labels)) or clean
    calibration = _as_logits(model, calibration, mean, std, device, samples, "held-out clean images", progress)
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
    result["intervals"] = _intervals(len(labels))
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


def _intervals(n: int) -> Dict[str, Any]:
    return {"error_95_halfwidth_at_50_percent": round(error_halfwidth(n), 2),
            "error_95_halfwidth_at_10_percent": round(error_halfwidth(n, 0.1), 2),
            "note": f"every set holds the same {n:,} images: a single error carries a 95% Wilson interval "
                    f"(error_interval), at most +-{error_halfwidth(n):.1f} points; the per-severity means over "
                    f"corruptions carry 95% bootstrap intervals over images (*_interval), and differences "
                    f"from stochastic inference paired intervals (*_minus_stochastic_interval)"}


def shift_table(result: Dict[str, Any], metrics=("error", "nll", "ece")) -> str:
    """A markdown table: one row per severity (0 = clean), for each mode the mean of ``metrics`` over
    corruptions, with the bootstrap interval of the mean when there is one."""
    modes = list(result["summary"]["0"])
    head = "| severity | " + " | ".join(f"{m} {k.upper() if k != 'error' else 'error %'}"
                                       for m in modes for k in metrics) + " |"
    lines = [head, "|" + " --- |" * (1 + len(modes) * len(metrics))]
    for s, row in result["summary"].items():
        cells = []
        for m in modes:
            for k in metrics:
                v, iv = row[m][k], row[m].get(f"{k}_interval")
                fmt = "{:.3f}" if k in ("nll", "brier") else "{:.2f}"
                cells.append(fmt.format(v) + (f" ({fmt.format(iv[0])}-{fmt.format(iv[1])})" if iv else ""))
        lines.append(f"| {'clean' if s == '0' else s} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_shift(results: Dict[str, Dict[str, Any]], path: os.PathLike, title: str = "") -> None:
    """ECE and error (mean over corruptions) against severity, 0 = clean, one line per model and mode
    (the figure style of Ovadia et al.), written as a PNG. ``results``: label -> :func:`evaluate_shift`."""
    from .plots import _figure

    fig = _figure(9.6, 4.2)
    axes = fig.subplots(1, 2)
    markers = {"deterministic": "o", "deterministic+T": "s", "stochastic": "^", "stochastic+T": "D"}
    line = 0
    for (label, res), style in zip(results.items(), ["-", "--", ":", "-."] * 4):
        sev = [int(s) for s in res["summary"]]
        for mode in res["summary"]["0"]:
            for ax, k in zip(axes, ("ece", "error")):
                ax.plot(sev, [res["summary"][str(s)][mode][k] for s in sev], style, color=f"C{line % 10}",
                        marker=markers[mode], markersize=4, label=f"{label}: {mode.replace('+T', ' + temperature')}")
            line += 1
    for ax, k in zip(axes, ("expected calibration error (%, 15 bins)", "error (%)")):
        ax.set_xlabel("corruption severity (0 = clean)")
        ax.set_ylabel(k)
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=7, frameon=False)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
