"""A run directory: the resolved config, per-epoch metrics, checkpoints and results, written safely.

    RUN_DIR/config.json         the resolved configuration
    RUN_DIR/metrics.jsonl       one JSON line per epoch
    RUN_DIR/checkpoint.pt       the latest checkpoint; checkpoint.prev.pt, the one before
    RUN_DIR/results.json        parameter count, training time, device, errors per evaluated split
    RUN_DIR/weights.pt          a finished run's final weights and config alone, in place of its checkpoints
                                (``swapout sweep --keep-finished weights``): what evaluation needs, half the size

Every file is written to a temporary name and renamed into place, so an interrupted write leaves the
previous version intact. A checkpoint carries a SHA-256 of its payload; one that is truncated or
corrupt is detected on load, and the previous one is used instead. Inside `guarded`, every write into a
directory happens under that directory's guard (a lease that workers of one study share).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import warnings
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Callable, ContextManager, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch

__all__ = ["RunDir", "CheckpointError", "save_json", "read_json", "read_checkpoint", "write_checkpoint", "write_pack",
           "read_pack", "guarded"]

_MAGIC = b"SWAPOUT-CKPT-1\n"


class CheckpointError(ValueError):
    """No usable checkpoint: missing, truncated or corrupt."""


_GUARDS: Dict[Path, Callable[[], ContextManager[Any]]] = {}


@contextmanager
def guarded(directory: Union[str, os.PathLike[str]], guard: Callable[[], ContextManager[Any]]) -> Iterator[None]:
    """While the block runs, each write of this module into ``directory`` happens inside ``guard()``.

    A guard may raise instead of letting the write happen: a worker that lost its trial's run directory to
    a retry must write nothing more there (`swapout.tuning.trial_run.Lease`).

    Args:
        directory: the run directory.
        guard: called for each write; the context manager it returns is held around the whole write.

    Yields:
        Nothing; the guard is removed when the block ends.
    """
    key = Path(directory).resolve()
    _GUARDS[key] = guard
    try:
        yield
    finally:
        _GUARDS.pop(key, None)


def _guard(path: Path) -> ContextManager[Any]:
    guard = _GUARDS.get(Path(path).parent.resolve()) if _GUARDS else None
    return guard() if guard else nullcontext()


def save_json(obj: Any, path: Union[str, os.PathLike[str]]) -> None:
    """Write JSON atomically: a reader sees the old file or the new one, never half of one."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with _guard(path):
        tmp.write_text(json.dumps(obj, indent=2) + "\n")
        os.replace(tmp, path)


def _write_checkpoint(state: Dict[str, Any], path: Path) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(_MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_checkpoint(state: Dict[str, Any], path: Union[str, os.PathLike[str]]) -> None:
    """Write ``state`` to ``path`` atomically, with its checksum, in the format `read_checkpoint` reads."""
    with _guard(Path(path)):
        _write_checkpoint(state, Path(path))


def read_checkpoint(path: Union[str, os.PathLike[str]]) -> Dict[str, Any]:
    """Load a checkpoint written by this module, checking its digest; CheckpointError if unusable."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise CheckpointError(f"{path}: cannot be read ({err.strerror})") from None
    header_end = len(_MAGIC) + 65
    if not data.startswith(_MAGIC) or len(data) < header_end:
        raise CheckpointError(f"{path}: not a swapout checkpoint, or truncated in its header")
    digest, payload = data[len(_MAGIC):header_end - 1].decode(), data[header_end:]
    if hashlib.sha256(payload).hexdigest() != digest:
        raise CheckpointError(f"{path}: truncated or corrupt ({len(payload):,} bytes do not match the checksum "
                              f"written with them)")
    try:
        # weights_only: tensors, containers and numbers only, so a checkpoint from elsewhere cannot run code
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(f"{path}: refused to load: it holds more than tensors, numbers and containers "
                              f"({str(err).splitlines()[0][:200]})") from None
    except Exception as err:
        raise CheckpointError(f"{path}: cannot be loaded ({str(err).splitlines()[0][:200]})") from None
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict) or "config" not in state:
        raise CheckpointError(f"{path}: not a swapout checkpoint (it holds no model weights and config)")
    return state


def read_json(path: Union[str, os.PathLike[str]], what: str = "a swapout file") -> Dict[str, Any]:
    """The JSON object in ``path``; ValueError naming the file and what is wrong with it.

    Args:
        path: the file.
        what: what the file should be, for the message (``"a run's results"``).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as err:
        raise ValueError(f"{path}: cannot be read ({err.strerror or err})") from None
    except ValueError as err:  # not JSON, or not UTF-8
        raise ValueError(f"{path}: not {what}: not JSON ({err})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not {what}: expected a JSON object, got {type(data).__name__}")
    return data


class RunDir:
    """The files of one training run, in ``path``."""

    def __init__(self, path: Union[str, os.PathLike[str]]):
        self.path = Path(path)

    config_path = property(lambda self: self.path / "config.json")
    metrics_path = property(lambda self: self.path / "metrics.jsonl")
    checkpoint_path = property(lambda self: self.path / "checkpoint.pt")
    previous_checkpoint_path = property(lambda self: self.path / "checkpoint.prev.pt")
    results_path = property(lambda self: self.path / "results.json")
    weights_path = property(lambda self: self.path / "weights.pt")

    def create(self) -> None:
        """Make the directory, or fail with a clear message if it cannot be written."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / ".write-test"
            probe.write_text("")
            probe.unlink()
        except OSError as err:
            why = "it is a file" if self.path.is_file() else err.strerror
            raise ValueError(f"cannot write the run directory {self.path}: {why}") from None

    def exists(self) -> bool:
        return self.config_path.exists()

    def kept_nothing(self) -> bool:
        """Whether the run holds a config but nothing trained: no checkpoint, final weights or results (it
        stopped before its first checkpoint: killed, or a broken pipe)."""
        return self.exists() and not any(p.exists() for p in (self.checkpoint_path, self.previous_checkpoint_path,
                                                              self.weights_path, self.results_path))

    def read_config(self) -> Dict[str, Any]:
        """The run's config as recorded (a dict of `swapout.TrainConfig` fields); ValueError if unreadable."""
        try:
            config = read_json(self.config_path, "a run's config")["config"]
            if not isinstance(config, dict):
                raise ValueError(f"{self.config_path}: its \"config\" is not an object")
            return config
        except (ValueError, KeyError) as err:
            raise ValueError(f"{self.path} is not a swapout run directory (no readable config.json: {err})") from None

    def save_checkpoint(self, state: Dict[str, Any]) -> None:
        """Write a new checkpoint; the current one becomes the previous one."""
        with _guard(self.checkpoint_path):
            if self.checkpoint_path.exists():
                os.replace(self.checkpoint_path, self.previous_checkpoint_path)
            _write_checkpoint(state, self.checkpoint_path)

    def latest_checkpoint(self) -> Tuple[Dict[str, Any], Path, List[str]]:
        """The latest usable checkpoint, the file it came from, and why any newer file was skipped.

        Returns ``(state, path, skipped)``; ``skipped`` holds one line per damaged newer file, e.g.
        ``"checkpoint.pt: truncated or corrupt (...)"``. Raises CheckpointError if none is usable.
        """
        errors: List[Tuple[Path, str]] = []
        for path in (self.checkpoint_path, self.previous_checkpoint_path):
            if not path.exists():
                continue
            try:
                return read_checkpoint(path), path, [e.replace(f"{p}: ", f"{p.name}: ", 1) for p, e in errors]
            except CheckpointError as err:
                errors.append((path, str(err)))
        raise CheckpointError("; ".join(e for _, e in errors) or f"{self.path}: no checkpoint to resume from")

    def keep_weights_only(self) -> bool:
        """Replace a finished run's checkpoints by ``weights.pt``: its weights, config and training position,
        without the optimiser's state or random streams, so it can be evaluated but not trained on.

        Returns whether anything changed. The weights come from the latest usable checkpoint (the one a
        finished run wrote after its last step); ``weights.pt`` is in place before any checkpoint goes.
        """
        checkpoints = [p for p in (self.checkpoint_path, self.previous_checkpoint_path) if p.exists()]
        if not checkpoints:
            return False
        state, _, _ = self.latest_checkpoint()
        kept: Dict[str, Any] = {k: state[k] for k in ("model", "config", "pack") if k in state}
        kept["state"] = {k: v for k, v in state.get("state", {}).items() if k != "sums"}
        _write_checkpoint(kept, self.weights_path)
        for path in checkpoints:
            path.unlink()
        return True

    def load_checkpoint(self) -> Dict[str, Any]:
        """The latest usable checkpoint; falls back to the previous one, with a warning, if needed."""
        state, path, errors = self.latest_checkpoint()
        if errors:
            warnings.warn(f"{self.path / errors[0]}; using the previous checkpoint {path.name} instead",
                          RuntimeWarning, stacklevel=2)
        return state

    def read_metrics(self) -> List[Dict[str, Any]]:
        """The rows of metrics.jsonl, one per epoch; ValueError naming the file and line of one that is damaged."""
        if not self.metrics_path.exists():
            return []
        rows = []
        try:
            lines = self.metrics_path.read_text().splitlines()
        except (OSError, ValueError) as err:
            raise ValueError(f"{self.metrics_path}: cannot be read ({err})") from None
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as err:
                raise ValueError(f"{self.metrics_path}, line {number}: not JSON ({err}); each line holds one "
                                 f"epoch's figures: remove the damaged line to go on") from None
            if not isinstance(row, dict) or not isinstance(row.get("epoch"), int):
                raise ValueError(f"{self.metrics_path}, line {number}: not an epoch's figures (an object with its "
                                 f"\"epoch\"); remove the damaged line to go on")
            rows.append(row)
        return rows

    def write_metrics(self, rows: List[Dict[str, Any]]) -> None:
        tmp = self.metrics_path.with_name(self.metrics_path.name + ".tmp")
        with _guard(self.metrics_path):
            tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
            os.replace(tmp, self.metrics_path)

    def read_results(self) -> Optional[Dict[str, Any]]:
        """The run's results.json, or None before the run has finished; ValueError if it is damaged."""
        if not self.results_path.exists():
            return None
        results = read_json(self.results_path, "a run's results")
        if not isinstance(results.get("splits", {}), dict) or \
                not all(isinstance(v, dict) for v in results.get("splits", {}).values()):
            raise ValueError(f"{self.results_path}: not a run's results: its \"splits\" are not objects")
        return results


def write_pack(pack_dir, cfgs: Sequence[Any], run_dirs: Sequence[Any]) -> None:
    """Record a pack in ``pack_dir/pack.json``: its runs' configs and directories, in pack order."""
    Path(pack_dir).mkdir(parents=True, exist_ok=True)
    save_json({"runs": [{"path": str(p), "config": c.to_dict()} for c, p in zip(cfgs, run_dirs)]},
              Path(pack_dir) / "pack.json")


def read_pack(pack_dir) -> List[Dict[str, Any]]:
    """The runs recorded by `write_pack`: ``[{"path", "config"}]``; ValueError if there is no pack."""
    try:
        runs = read_json(Path(pack_dir) / "pack.json", "a pack's record")["runs"]
        if not isinstance(runs, list) or not runs or \
                not all(isinstance(r, dict) and {"path", "config"} <= set(r) for r in runs):
            raise ValueError('"runs" is not a list of {"path", "config"} objects')
        return runs
    except (ValueError, KeyError) as err:
        raise ValueError(f"{pack_dir} is not a pack directory (no readable pack.json: {err})") from None
