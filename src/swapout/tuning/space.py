"""The search space of ``swapout tune``: the keep probabilities of a preset's joins.

The paper chose its schedules by hand (Table 2: constants and linear schedules, theta1 = theta2 unless
stated) and names a search as future work. A space says, for theta1 and theta2, which schedules to try
and over what range, and optionally which methods and mask granularities::

    {
      "theta1": {"schedules": ["linear", "constant"], "low": 0.5, "high": 1.0, "step": 0.05},
      "theta2": {"schedules": ["linear"], "low": 0.3, "high": 1.0},
      "granularity": ["unit", "channel"],
      "method": ["swapout"]
    }

- ``linear`` tries ``linear(start,end)`` (the first block's keep probability, then the last's), both ends in
  ``[low, high]``; ``constant`` tries one value in ``[low, high]`` for every block.
- ``step`` (default 0.01) is the grid the values are drawn on, so that schedules read as the paper's do.
- A theta given as a number or a schedule (``"theta1": 1.0``, ``"theta2": "linear(1,0.5)"``) is fixed, not searched.
- ``granularity`` and ``method`` are choices; if absent, the preset's own. A method that does not take a theta
  (stochastic depth takes theta2 only) ignores that theta's entry.

Optuna's parameters are named ``theta1_schedule`` (when there is a choice), ``theta1_start`` and ``theta1_end``
(linear), ``theta1_value`` (constant), ``granularity`` and ``method``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Dict, List, Optional

from ..checks import GRANULARITIES
from ..methods import METHODS, JoinSpec

__all__ = ["DEFAULT_SPACE", "SCHEDULES", "check_space", "read_space", "suggest", "grid", "describe", "THETAS",
           "size"]

THETAS = ("theta1", "theta2")
SCHEDULES = ("linear", "constant")
DEFAULT_SPACE: Dict[str, Any] = {
    "theta1": {"schedules": ["linear", "constant"], "low": 0.5, "high": 1.0, "step": 0.05},
    "theta2": {"schedules": ["linear", "constant"], "low": 0.5, "high": 1.0, "step": 0.05},
}
_THETA_KEYS = {"schedules", "low", "high", "step"}


def _check_theta(name: str, entry: Any) -> Any:
    """One theta's entry, normalised; ValueError saying what is wrong and what is allowed."""
    if isinstance(entry, (int, float, str)) and not isinstance(entry, bool):
        from ..schedules import parse_schedule

        try:
            parse_schedule(str(entry))
        except ValueError as err:
            raise ValueError(f"{name}: {err}") from None
        return str(entry)
    if not isinstance(entry, dict) or set(entry) - _THETA_KEYS or not {"low", "high"} <= set(entry):
        raise ValueError(f"{name}: expected {{\"schedules\": [...], \"low\": L, \"high\": H, \"step\": S}} (schedules "
                         f"and step optional), or a fixed value such as 1.0 or \"linear(1,0.5)\"; got {entry!r}")
    schedules = entry.get("schedules", list(SCHEDULES))
    if not isinstance(schedules, list) or not schedules or any(s not in SCHEDULES for s in schedules) \
            or len(set(schedules)) != len(schedules):
        raise ValueError(f"{name}: schedules must be a non-empty list of distinct {' and '.join(SCHEDULES)}, "
                         f"got {schedules!r}")
    low, high, step = entry["low"], entry["high"], entry.get("step", 0.01)
    for key, value in (("low", low), ("high", high), ("step", step)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{name}: {key} must be a number, got {value!r}")
    if not 0 <= low <= high <= 1:
        raise ValueError(f"{name}: keep probabilities need 0 <= low <= high <= 1, got low {low}, high {high}")
    if not 0 < step <= 1:
        raise ValueError(f"{name}: step must be in (0, 1], got {step}")
    if abs((high - low) / step - round((high - low) / step)) > 1e-9:
        raise ValueError(f"{name}: high - low ({high - low:g}) must be a whole number of steps ({step:g})")
    return {"schedules": schedules, "low": float(low), "high": float(high), "step": float(step)}


def _check_choices(name: str, values: Any, allowed: tuple) -> List[str]:
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, list) or not values or any(v not in allowed for v in values) \
            or len(set(values)) != len(values):
        raise ValueError(f"{name}: expected a non-empty list of distinct values among {', '.join(allowed)}, "
                         f"got {values!r}")
    return list(values)


def check_space(space: Any) -> Dict[str, Any]:
    """The space ``space`` normalised (see the module's docstring); ValueError names the first problem."""
    if not isinstance(space, dict) or not space:
        raise ValueError("a space is a non-empty JSON object with theta1, theta2, and optionally granularity and "
                         "method, e.g. {\"theta2\": {\"schedules\": [\"linear\"], \"low\": 0.5, \"high\": 1}}")
    unknown = sorted(set(space) - set(THETAS) - {"granularity", "method"})
    if unknown:
        raise ValueError(f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; a space has theta1, "
                         f"theta2, granularity and method")
    out: Dict[str, Any] = {name: _check_theta(name, space[name]) for name in THETAS if name in space}
    if "granularity" in space:
        out["granularity"] = _check_choices("granularity", space["granularity"], GRANULARITIES)
    if "method" in space:
        out["method"] = _check_choices("method", space["method"], tuple(m for m in METHODS if m != "resnet"))
    if not any(isinstance(out.get(t), dict) for t in THETAS) and len(out.get("granularity", [])) < 2 \
            and len(out.get("method", [])) < 2:
        raise ValueError("the space searches nothing: give theta1 or theta2 a range, or several granularities or "
                         "methods")
    return out


def read_space(path: Optional[str]) -> Dict[str, Any]:
    """The space in the JSON file ``path`` (None: `DEFAULT_SPACE`), checked; ValueError names the file."""
    if path is None:
        return check_space(DEFAULT_SPACE)
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise ValueError(f"--space {path}: cannot be read ({err.strerror})") from None
    if not text.strip():
        raise ValueError(f"--space {path}: the file is empty; it holds a JSON object such as "
                         f"{json.dumps({'theta2': DEFAULT_SPACE['theta2']})}")
    try:
        return check_space(json.loads(text))
    except ValueError as err:  # json.JSONDecodeError is a ValueError too
        raise ValueError(f"--space {path}: {err}") from None


def _values(entry: Dict[str, Any]) -> List[float]:
    n = round((entry["high"] - entry["low"]) / entry["step"])
    return [round(entry["low"] + i * entry["step"], 10) for i in range(n + 1)]


def _uses(method: str, base: Dict[str, Any]) -> tuple:
    """The thetas that ``method`` reads, over the preset ``base``."""
    return JoinSpec(method, skipforward_on=base.get("skipforward_on", "x") if method == "skipforward" else "x").uses()


def size(space: Dict[str, Any], base: Dict[str, Any]) -> int:
    """How many different trials ``space`` holds over the preset ``base``: 1 when it searches nothing there.

    Args:
        space: a space as `check_space` returns it.
        base: the preset's config (its method, when the space chooses none).

    Returns:
        The number of distinct parameter sets that `suggest` can draw.
    """
    total = 0
    for method in space.get("method", [base.get("method", "swapout")]):
        n = len(space.get("granularity", [None]))
        for name in THETAS:
            entry = space.get(name)
            if name in _uses(method, base) and isinstance(entry, dict):
                k = len(_values(entry))
                n *= sum(k * k if schedule == "linear" else k for schedule in entry["schedules"])
        total += n
    return total


def suggest(trial, space: Dict[str, Any], base: Dict[str, Any]) -> Dict[str, Any]:
    """The config fields that ``trial`` (an Optuna trial) draws from ``space``; ``base`` is the preset's config.

    Returns the join fields to set over the preset: ``method``, ``granularity``, ``theta1``, ``theta2`` as the
    config writes them (``"linear(0.95,0.6)"``, ``"0.75"``). A drawn method clears the preset's thetas that it
    does not read (stochastic depth over a swapout preset: theta1 goes), so that every draw is a valid config.
    """
    fields: Dict[str, Any] = {}
    if "method" in space:
        fields["method"] = trial.suggest_categorical("method", space["method"])
        if fields["method"] != "skipforward":
            fields["skipforward_on"] = "x"
    if "granularity" in space:
        fields["granularity"] = trial.suggest_categorical("granularity", space["granularity"])
    method = fields.get("method", base.get("method", "swapout"))
    uses = _uses(method, base)
    for name in THETAS:
        entry = space.get(name)
        if name not in uses:
            if "method" in fields:
                fields[name] = None
            continue
        if entry is None:
            continue
        if isinstance(entry, str):
            fields[name] = entry
            continue
        kind = entry["schedules"][0] if len(entry["schedules"]) == 1 else \
            trial.suggest_categorical(f"{name}_schedule", entry["schedules"])
        low, high, step = entry["low"], entry["high"], entry["step"]
        if kind == "linear":
            start = trial.suggest_float(f"{name}_start", low, high, step=step)
            end = trial.suggest_float(f"{name}_end", low, high, step=step)
            fields[name] = f"linear({start:g},{end:g})"
        else:
            fields[name] = f"{trial.suggest_float(f'{name}_value', low, high, step=step):g}"
    return fields


def grid(space: Dict[str, Any], base: Dict[str, Any]) -> Dict[str, List[Any]]:
    """Every parameter's values, for Optuna's GridSampler; ValueError if the space is not a fixed grid (a choice
    of schedules or of methods makes some parameters depend on others)."""
    if len(space.get("method", [])) > 1 or any(isinstance(space.get(t), dict) and len(space[t]["schedules"]) > 1
                                               for t in THETAS):
        raise ValueError("--sampler grid needs a fixed set of parameters: give each searched theta one schedule "
                         "and the space at most one method")
    out: Dict[str, List[Any]] = {k: list(space[k]) for k in ("method", "granularity") if k in space}
    uses = _uses(space.get("method", [base.get("method", "swapout")])[0], base)
    for name in THETAS:
        entry = space.get(name)
        if name in uses and isinstance(entry, dict):
            keys = ("start", "end") if entry["schedules"] == ["linear"] else ("value",)
            out.update({f"{name}_{k}": _values(entry) for k in keys})
    return out


def describe(params: Dict[str, Any]) -> str:
    """A trial's parameters in one line, ``theta1_schedule=linear, theta1_start=0.95, ...``."""
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
