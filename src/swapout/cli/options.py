"""The option types and help texts of the ``swapout`` command line.

Help texts follow one rule, which ``tests/cli/test_cli.py`` enforces: ``default: X`` names a value the
option accepts as it stands (``--theta1 None``); a default that is not such a value is described as
``if not given: ...``.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, Callable, Dict, Optional

__all__ = ["boolean", "list_of", "positive_float", "positive_int", "or_none", "config_options", "NONE_WORDS"]

# What the command line reads as "unset" for the fields that may be None (the word help texts print).
NONE_WORDS = ("none", "null")

_SCHEDULE_HELP = "a schedule: 0.8, linear(1,0.5) or 0.2,0.5,0.8 (one per block); None: linear(1,0.5); "
HELP = {"theta1": _SCHEDULE_HELP, "theta2": _SCHEDULE_HELP, "device": "auto, cpu, cuda or cuda:N; ",
        "sync_bn": "true or false; data-parallel training on GPUs only; ",
        "milestones": "epochs after which lr is divided by 10, increasing, e.g. 196,224; None: the paper's "
                      "scaled to --epochs; ",
        "granularity": "None: unit, or batch for stochastic_depth; ",
        "eval_limit": "evaluate at most N images per split; None: every image; ",
        "max_steps": "stop after N optimiser steps (a short run); None: no limit; ",
        "compile": "true or false; None: on CUDA only; ",
        "val_split": "hold out the last N training images for validation (0: none); ",
        "eval_samples": "stochastic passes per image in the final evaluation (0: deterministic only); ",
        "checkpoint_every": "also checkpoint every N steps inside an epoch (0: at epoch ends only); ",
        "data_dir": "a folder with the data, or one to download it into; None: $SWAPOUT_DATA if set, else the "
                    "usual data folder; "}


def boolean(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _auto_or_boolean(text: str) -> Optional[bool]:
    return None if text.strip().lower() == "auto" else boolean(text)


def or_none(kind: Callable) -> Callable:
    """An argparse type for a field that may be None: ``None`` (any case) is None, anything else ``kind``."""
    def parse(text: str):
        return None if text.strip().lower() in NONE_WORDS else kind(text)
    parse.__name__ = getattr(kind, "__name__", "value")  # argparse names the type in "invalid ... value"
    return parse


def list_of(kind, example: str):
    """An argparse type: a comma-separated list of ``kind``."""
    def parse(text: str) -> list:
        try:
            values = [kind(v.strip()) for v in text.split(",") if v.strip()]
        except ValueError:
            values = []
        if not values or (kind is int and min(values) < 0):
            raise argparse.ArgumentTypeError(f"expected a comma-separated list like {example}, got {text!r}")
        return values
    return parse


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def seed_int(text: str) -> int:
    """A seed: an integer in [0, 2**32), what every random generator it seeds takes."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value < 2 ** 32:
        raise argparse.ArgumentTypeError(f"expected an integer in [0, 2**32), got {text!r}")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def config_options(parser: argparse.ArgumentParser, changes: Optional[Dict[str, str]] = None) -> None:
    """One --option per TrainConfig field; only options actually given end up in the namespace.

    ``changes`` replaces the help of some fields (``argparse.SUPPRESS`` hides one that a subcommand
    takes elsewhere, as a sweep takes its seeds).
    """
    from ..models import list_models
    from ..runs.config import TrainConfig

    group = parser.add_argument_group("config fields (override the preset or the paper's defaults)")
    for f in dataclasses.fields(TrainConfig):
        if f.name == "preset":
            continue
        optional = str(f.type).startswith("Optional[")
        kinds: Dict[str, Callable[[str], Any]] = {"int": int, "float": float, "bool": boolean}
        kind = kinds.get(str(f.type).replace("Optional[", "").rstrip("]"), str)
        if f.name == "milestones":
            kind = list_of(int, "196,224")
        if f.name == "compile":  # "auto", the word of earlier versions, still means None
            kind = _auto_or_boolean
        choices = TrainConfig.CHOICES.get(f.name) or (list_models() if f.name == "model" else None)
        text = (f"one of {', '.join(choices)}; " if choices else "") + HELP.get(f.name, "")
        text = (changes or {}).get(f.name, f"{text}default: {f.default!r}")
        group.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=or_none(kind) if optional else kind,
                           default=argparse.SUPPRESS, metavar=f.name.upper(), help=text)
