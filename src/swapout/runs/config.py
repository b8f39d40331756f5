"""Training configuration: one dataclass, the paper's recipe as its defaults, presets as JSON files.

A preset (``presets/<table>/<row>.json`` inside the package) names a row of the paper's Tables 1-5:
its config fields plus the paper's reported errors under ``"paper"``. Any field can be overridden.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from dataclasses import dataclass
from importlib import resources
from typing import Any, Dict, List, Optional, Sequence

from ..checks import GRANULARITIES, PRECISIONS, check_positive_int
from ..data.files import DATASETS
from ..data.pipeline import CROPS
from ..layers import SKIPFORWARD_ON
from ..methods import METHODS, JoinSpec
from ..models import list_models

__all__ = ["TrainConfig", "load_preset", "list_presets", "merge_preset", "learning_rate", "JOIN_FIELDS", "PAPER_EPOCHS",
           "PAPER_MILESTONES"]

PAPER_EPOCHS = 256
"""The paper's training length (section 4): 256 epochs, the default of `TrainConfig.epochs`."""
PAPER_MILESTONES = (196, 224)
"""The epochs after which the paper divides the learning rate by 10; with fewer epochs they scale in proportion."""


@dataclass
class TrainConfig:
    """Everything that defines a training run. Defaults are the paper's recipe (section 4).

    Fields are not checked on construction: `validate` checks them, `join` the method's schedules.

    Args:
        preset: the preset this config started from (``"<table>/<row>"``, see `list_presets`), if any.
        dataset: ``"cifar10"`` or ``"cifar100"``.
        model: a name from `swapout.list_models`.
        depth: the network's depth (number of layers, e.g. 20).
        width: multiplier k of the widths of the three stages (16, 32, 64).
        method: the training method: ``"resnet"``, ``"swapout"``, ``"dropout"``, ``"residual_dropout"``,
            ``"stochastic_depth"`` or ``"skipforward"`` (see `swapout.methods.JoinSpec`).
        theta1: schedule of the keep probability of X over the blocks, in the paper's notation (``"0.8"``,
            ``"linear(1,0.5)"``, ``"0.2,0.5,0.8"``); None: the method's default.
        theta2: schedule of the keep probability of F(X), in the same notation; None: the method's default.
        granularity: mask granularity (``"unit"``, ``"channel"``, ``"sample"`` or ``"batch"``); None: the
            method's default.
        skipforward_on: for skipforward, whether Theta is on X (``"x"``, equation 4 as printed) or on F(X)
            (``"fx"``).
        epochs: training epochs (the paper: 256).
        batch_size: images per mini-batch.
        lr: initial learning rate of SGD.
        momentum: SGD momentum.
        weight_decay: L2 weight decay.
        milestones: epochs after which the learning rate is divided by 10, increasing; None: the paper's 196
            and 224, scaled to ``epochs``.
        crop: the random translation: one per mini-batch (``"batch"``, the paper) or one per image (``"image"``).
        sync_bn: in data-parallel runs, BatchNorm statistics over the global batch (GPU only).
        val_split: hold out the last N training images for validation (0: none).
        eval_samples: passes of stochastic inference in the evaluation at the end (0: deterministic only).
        eval_limit: evaluate on at most this many images per split (None: all).
        max_steps: stop after this many optimiser steps (a short run); None: train all ``epochs``.
        checkpoint_every: also checkpoint every N optimiser steps inside an epoch (0: at epoch ends only).
        seed: random seed of the run.
        device: ``"auto"`` (CUDA when available, else the CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
        precision: ``"fp32"`` or ``"bf16"`` (autocast); ``"auto"``: bf16 on CUDA, fp32 on the CPU.
        compile: whether to ``torch.compile`` the training step; None: on CUDA only.
        data_dir: folder of the datasets; None: `swapout.data.default_data_dir`.

    Unset fields take the paper's recipe: ``epochs`` 256 (`PAPER_EPOCHS`), the learning rate divided by 10
    after epochs 196 and 224 (`PAPER_MILESTONES`, scaled to ``epochs``), batch 128, ``lr`` 0.1, momentum 0.9,
    weight decay 1e-4.

    Examples:
        >>> from swapout.runs.config import TrainConfig, load_preset
        >>> TrainConfig().epochs, TrainConfig().resolved_milestones()
        (256, [196, 224])
        >>> config = TrainConfig.from_dict({**load_preset("table2/linear-1-0.5"), "epochs": 32})
        >>> config.epochs, config.resolved_milestones(), config.theta1
        (32, [24, 28], 'linear(1,0.5)')
    """

    preset: Optional[str] = None          # the preset this config started from, if any
    dataset: str = "cifar10"              # cifar10 or cifar100
    model: str = "resnet_v2_ours"         # a name from swapout.list_models()
    depth: int = 20
    width: int = 1                        # multiplier k of the widths (16, 32, 64)
    method: str = "swapout"               # resnet, swapout, dropout, residual_dropout, stochastic_depth, skipforward
    theta1: Optional[str] = None          # schedule in the paper's notation; None: the method's default
    theta2: Optional[str] = None
    granularity: Optional[str] = None     # mask granularity; None: the method's default
    skipforward_on: str = "x"             # skipforward: Theta on X (equation 4 as printed) or on F(X) ("fx")
    epochs: int = PAPER_EPOCHS
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    milestones: Optional[List[int]] = None  # epochs after which lr is divided by 10; None: 196, 224 scaled to epochs
    crop: str = "batch"                   # one translation per mini-batch (paper) or per image
    sync_bn: bool = False                 # data-parallel runs: BatchNorm statistics over the global batch (GPU)
    val_split: int = 0                    # hold out the last N training images for validation
    eval_samples: int = 30                # passes of stochastic inference at the end (0: deterministic only)
    eval_limit: Optional[int] = None      # evaluate on at most this many images per split (None: all)
    max_steps: Optional[int] = None       # stop after this many optimiser steps (a short run)
    checkpoint_every: int = 0             # also checkpoint every N steps inside an epoch (0: at epoch ends)
    seed: int = 0
    device: str = "auto"                  # auto, cpu, cuda, cuda:1, ...
    precision: str = "auto"               # fp32 or bf16 (autocast); auto: bf16 on CUDA, fp32 on the CPU
    compile: Optional[bool] = None        # torch.compile the step; None: on CUDA only
    data_dir: Optional[str] = None

    # fields that may differ when a run is resumed: where the data is, which device runs it, how fast,
    # and where it stops
    RESUMABLE_CHANGES = ("data_dir", "device", "precision", "compile", "max_steps")
    # fields in which the runs of one pack (swapout.training.packing) may differ: everything a run has of its own
    # (its seed, its method, keep probabilities and granularity); the rest (data, architecture, schedule) is shared
    PACK_MAY_DIFFER = ("preset", "seed", "method", "theta1", "theta2", "granularity", "skipforward_on")
    # allowed values of the fields that take a word, for checks and --help
    CHOICES = {"dataset": DATASETS, "method": METHODS, "crop": CROPS, "granularity": GRANULARITIES,
               "skipforward_on": SKIPFORWARD_ON, "precision": ("auto",) + PRECISIONS}

    def resolved_milestones(self) -> List[int]:
        """The epochs after which the learning rate is divided by 10.

        Returns:
            ``milestones`` if set, else the paper's 196 and 224 scaled to ``epochs`` (rounded).
        """
        if self.milestones is not None:
            return list(self.milestones)
        return [round(m * self.epochs / PAPER_EPOCHS) for m in PAPER_MILESTONES]

    def learning_rate(self, epoch: int) -> float:
        """Learning rate during ``epoch`` (0-based): ``lr`` divided by 10 after each milestone epoch.

        Args:
            epoch: the epoch, counted from 0.

        Returns:
            ``lr`` times 0.1 to the power of the number of milestones <= ``epoch``.
        """
        return self.lr * 0.1 ** sum(epoch >= m for m in self.resolved_milestones())

    def validate(self) -> TrainConfig:
        """Check every field.

        The method's thetas and granularity are checked by `join`, which parses the schedules;
        the depth and an explicit schedule's length when the model is built.

        Returns:
            The config itself, unchanged.

        Raises:
            ValueError: naming the field and what is allowed, for the first field found out of range: a word
                not among `CHOICES`, an unknown model, a count that is not a positive integer, a
                negative rate, a non-boolean ``sync_bn`` or ``compile``, a ``val_split`` of 50,000 or more,
                or milestones that are not increasing epochs >= 1.
        """
        for name, allowed in self.CHOICES.items():
            value = getattr(self, name)
            if not (value is None and name == "granularity") and value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        if self.model not in list_models():
            raise ValueError(f"unknown model {self.model!r}; available: {', '.join(list_models())}")
        for name in ("epochs", "batch_size", "width", "depth"):
            check_positive_int(getattr(self, name), name)
        for name, top in (("lr", math.inf), ("weight_decay", math.inf), ("momentum", 1.0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < top:
                raise ValueError(f"{name} must be a " + ("finite number >= 0" if top == math.inf else
                                                         f"number in [0, {top:g})") + f", got {value!r}")
        for name in ("val_split", "eval_samples", "checkpoint_every", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        if self.seed >= 2 ** 32:  # the random generators seeded from it take 32 or 64 bits; this leaves room
            raise ValueError(f"seed must be below 2**32, got {self.seed}")
        for name in ("eval_limit", "max_steps"):
            if getattr(self, name) is not None:
                check_positive_int(getattr(self, name), name)
        if not isinstance(self.sync_bn, bool):
            raise ValueError(f"sync_bn must be true or false, got {self.sync_bn!r}")
        if self.compile is not None and not isinstance(self.compile, bool):
            raise ValueError(f"compile must be true, false or None (on CUDA only), got {self.compile!r}")
        if self.val_split >= 50_000:
            raise ValueError(f"val_split must leave training images: at most 49,999, got {self.val_split}")
        if self.milestones is not None and (not isinstance(self.milestones, list) or any(
                isinstance(m, bool) or not isinstance(m, int) or m < 1 for m in self.milestones)
                or self.milestones != sorted(set(self.milestones))):
            raise ValueError(f"milestones must be increasing epochs >= 1 (e.g. 196,224), got {self.milestones!r}")
        return self

    @staticmethod
    def check_pack(cfgs: Sequence[TrainConfig]) -> None:
        """Check that the runs ``cfgs`` may train together in one pack.

        Args:
            cfgs: the configs of the pack's runs, at least one.

        Raises:
            ValueError: if they differ in a field that runs of one pack share (any but
                `PACK_MAY_DIFFER`).
        """
        first = cfgs[0].to_dict()
        differ = sorted({k for cfg in cfgs[1:] for k, v in cfg.to_dict().items()
                         if v != first[k] and k not in TrainConfig.PACK_MAY_DIFFER})
        if differ:
            raise ValueError(f"its runs differ in {', '.join(differ)}; runs of one pack share everything but "
                             f"{', '.join(TrainConfig.PACK_MAY_DIFFER)}")

    def join(self) -> JoinSpec:
        """How the network's blocks join X and F(X).

        The schedules are parsed and range-checked once: the JoinSpec is kept for as long as the join
        fields stay as they were, so the command line's check and the model's construction share it.

        Returns:
            The `JoinSpec` of ``method``, ``theta1``, ``theta2``, ``granularity`` and
            ``skipforward_on``.

        Raises:
            ValueError: for a bad method, schedule or granularity (see `JoinSpec`).
        """
        key = tuple(getattr(self, k) for k in ("method", "theta1", "theta2", "granularity", "skipforward_on"))
        cached = self.__dict__.get("_join")
        if cached is None or cached[0] != key:
            # a copy of the key, so that a list changed in place is seen; not a field, so to_dict and
            # equality ignore it (copies carry it, and check it like the original)
            cached = (copy.deepcopy(key), JoinSpec(*key))
            self.__dict__["_join"] = cached
        return cached[1]

    def to_dict(self) -> Dict[str, Any]:
        """The fields as a dict.

        Returns:
            ``{field name: value}`` for every field, as written to a run's config.json.
        """
        return dataclasses.asdict(self)

    @classmethod
    def field_names(cls) -> List[str]:
        """The names of the config's fields.

        Returns:
            The field names, in the order they are declared.
        """
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def for_resume(cls, saved: Dict[str, Any], given: Dict[str, Any]) -> TrainConfig:
        """The config of a run being resumed: ``saved`` (its config.json) with the fields ``given`` again.

        A given field must equal the saved one (the preset included), except the fields of
        ``RESUMABLE_CHANGES``.

        Args:
            saved: the run's saved config, ``{field: value}``.
            given: the fields given again for the resumed run, ``{field: value}``.

        Returns:
            The config of ``saved`` with ``given`` over it.

        Raises:
            ValueError: listing every given field that differs from the saved one and may not change, or
                naming unknown fields (see `from_dict`).
        """
        differ = {k: (saved.get(k), v) for k, v in given.items()
                  if saved.get(k) != v and k not in cls.RESUMABLE_CHANGES}
        if differ:
            listed = ", ".join(f"{k} (run: {a!r}, given: {b!r})" for k, (a, b) in differ.items())
            raise ValueError(f"the given config differs from the run's: {listed}; only "
                             f"{', '.join(cls.RESUMABLE_CHANGES)} may change")
        return cls.from_dict({**saved, **given})

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> TrainConfig:
        """A config from a dict of fields, as read from a config.json, a preset or a sweep file.

        Values are normalised to one form (an integer for a float field becomes a float, a number for a string
        field a string), and a ``compile`` written as ``"auto"``, ``"true"`` or ``"false"`` by older configs
        becomes None, True or False. The fields are not validated (see `validate`).

        Args:
            values: ``{field name: value}``; fields left out take their defaults.

        Returns:
            The config.

        Raises:
            ValueError: naming the keys of ``values`` that are not fields.
        """
        unknown = sorted(set(values) - set(cls.field_names()))
        if unknown:
            raise ValueError(f"unknown config field{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
                             f"fields are: {', '.join(cls.field_names())}")
        if isinstance(values.get("compile"), str):  # configs written before compile was typed
            legacy = {"auto": None, "true": True, "false": False}
            values = {**values, "compile": legacy.get(values["compile"].lower(), values["compile"])}
        return cls(**{k: _normalised(_KINDS[k], v) for k, v in values.items()})


# Each field's type without Optional: "int", "float", "str", "bool", ...
_KINDS = {f.name: str(f.type).replace("Optional[", "").rstrip("]") for f in dataclasses.fields(TrainConfig)}


def _normalised(kind: str, value: Any) -> Any:
    """One form per value, wherever it came from: a JSON sweep file's ``"theta1": 0.5`` is the command
    line's ``--theta1 0.5`` ("0.5"), and ``"weight_decay": 0`` is 0.0, so configs compare equal."""
    if isinstance(value, bool) or value is None:
        return value
    if kind == "float" and isinstance(value, int):
        return float(value)
    if kind == "str" and isinstance(value, (int, float)):
        return str(value)
    return value


# The fields that say how a block joins X and F(X): they go together with the method.
JOIN_FIELDS = ("method", "theta1", "theta2", "granularity", "skipforward_on")


def merge_preset(preset: Dict[str, Any], given: Dict[str, Any]) -> Dict[str, Any]:
    """The config fields of ``preset`` with those ``given`` over them.

    When ``given`` changes the method, the preset's join fields that the new method cannot take (its
    thetas, granularity, skipforward_on) are dropped: they belonged to the preset's method, so
    ``--preset short/quickstart --method resnet`` is a plain ResNet. Fields given explicitly stay, to be
    checked like any other.
    """
    merged = {**preset, **given}
    method, on = merged.get("method", "swapout"), merged.get("skipforward_on", "x")
    if "method" not in given or given["method"] == preset.get("method", "swapout") or method not in METHODS:
        return merged
    takes = set(JoinSpec(method, skipforward_on=on if method == "skipforward" and on in SKIPFORWARD_ON else "x").uses())
    if method != "resnet":
        takes.add("granularity")
    if method == "skipforward":
        takes.add("skipforward_on")
    return {k: v for k, v in merged.items() if k in given or k not in JOIN_FIELDS[1:] or k in takes}


def learning_rate(cfg: TrainConfig, epoch: int) -> float:
    """Learning rate of ``cfg`` during ``epoch`` (0-based); see `TrainConfig.learning_rate`."""
    return cfg.learning_rate(epoch)


def _preset_root():
    return resources.files("swapout.runs") / "presets"


def list_presets() -> Dict[str, Dict[str, Any]]:
    """Every preset of the package, read from its JSON files.

    Returns:
        ``{name: {"config": {...}, "paper": {...}, "row": "..."}}``, sorted by name (``"<table>/<row>"``): the
        config fields, the paper's reported errors, and the row of the paper's table the preset stands for.

    Examples:
        >>> from swapout.runs.config import list_presets
        >>> presets = list_presets()
        >>> presets["table2/linear-1-0.5"]["paper"]
        {'deterministic_error': 6.43, 'stochastic_error': 5.68}
        >>> sum(name.startswith("table") for name in presets)      # the trained rows of Tables 1-5
        30
    """
    out = {}
    root = _preset_root()
    for table in sorted(p for p in root.iterdir() if p.is_dir()):
        for entry in sorted(p for p in table.iterdir() if p.name.endswith(".json")):
            out[f"{table.name}/{entry.name[:-5]}"] = json.loads(entry.read_text())
    return out


def load_preset(name: str) -> Dict[str, Any]:
    """The config fields of one preset.

    Args:
        name: the preset's name, ``"<table>/<row>"`` (e.g. ``"short/quickstart"``; see `list_presets`).

    Returns:
        The preset's config fields, ``{field: value}``, with ``preset`` set to ``name``.

    Raises:
        ValueError: for an unknown name.

    Examples:
        >>> from swapout.runs.config import load_preset
        >>> preset = load_preset("table1/swapout-v2-w2")
        >>> preset["model"], preset["width"], preset["theta1"]
        ('resnet_v2_ours', 2, 'linear(1,0.5)')
    """
    presets = list_presets()
    if name not in presets:
        raise ValueError(f"unknown preset {name!r}; run 'swapout presets' to list them "
                         f"(for example {', '.join(list(presets)[:3])})")
    return {**presets[name]["config"], "preset": name}
