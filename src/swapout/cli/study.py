"""Where a study of ``swapout tune`` or ``swapout sweep --storage`` lives, checked before anything is created: its
database, its folder, and this machine's device, data and GPUs. A refused start leaves no study, no folder and
no file behind."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, Dict, List, Optional

from .checks import UsageError, check_data_dir

__all__ = ["open_locked", "claim_folder", "machine_checks", "writable", "visible_gpus"]


def machine_checks(device: Optional[str], data_dir: Optional[str]) -> None:
    """This machine's device and data folder, checked before a study is touched (a worker that cannot train
    would otherwise leave a trial behind)."""
    from ..runs.distributed import resolve_device

    if device is not None:
        try:
            resolve_device(device)
        except ValueError as err:
            raise UsageError(f"--device: {err}") from None
    check_data_dir(data_dir)


def writable(folder: Path, option: str) -> None:
    """UsageError unless ``folder`` can be made (or written, if it exists) by this user; nothing is created."""
    existing = next(p for p in (folder.absolute(), *folder.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise UsageError(f"{option} {folder}: {existing} is a file; {option} must name a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {folder}: {existing} cannot be written by this user; choose a writable folder")


def open_locked(url: str, args: argparse.Namespace, name: str, identity: Dict[str, Any], sampler=None, pruner=None,
          fill=None):
    """The storage and the study ``name``, made (and filled by ``fill(study)``) or joined under the storage's
    lock, so that workers started together on an empty database make its tables and the study once."""
    from ..tuning.storage import open_storage, open_study, shown, storage_errors, study_lock

    if args.grace < 2 * args.heartbeat:
        raise UsageError(f"--grace {args.grace} must be at least twice --heartbeat {args.heartbeat}: otherwise a "
                         f"live trial is taken for dead between two heartbeats and retried while it runs")
    try:
        with study_lock(url):
            storage = open_storage(url, args.heartbeat, args.grace)
            study, created = open_study(storage, name, identity, sampler, pruner)
            if created and fill is not None:
                fill(study)
    except storage_errors() as err:
        reason = str(getattr(err, "orig", err) or err).strip().splitlines()[0]
        raise UsageError(f"--storage {shown(url)}: cannot reach the database ({reason})") from None
    return storage, study, created


def claim_folder(study_dir: Path, name: str, url: str, write: bool = False) -> None:
    """One folder, one study: its trial-NNNN directories would otherwise mix two studies' runs. Checked before
    the study is opened (``write`` False), recorded in STUDY_DIR/study.json once it is."""
    import json

    from ..tuning.storage import shown

    mark = study_dir / "study.json"
    here = {"study": name, "storage": shown(url)}
    if mark.exists():
        from ..runs.rundir import read_json

        saved = read_json(mark, "a study's record")
        if set(saved) != {"study", "storage"}:
            raise UsageError(f"{mark}: not a study's record ({{\"study\", \"storage\"}}); remove it if this folder "
                             f"holds no study's runs")
        if saved != here:
            raise UsageError(f"--out {study_dir} holds the runs of study {saved['study']!r} in {saved['storage']}; "
                             f"give that study's --study and --storage to join it, or choose another --out")
    try:
        if write and not mark.exists():
            study_dir.mkdir(parents=True, exist_ok=True)
            mark.write_text(json.dumps(here) + "\n")
        elif url.startswith("sqlite"):
            study_dir.mkdir(parents=True, exist_ok=True)  # the database's own folder
    except OSError as err:
        raise UsageError(f"--out {study_dir} cannot be written ({err.strerror}); choose a folder this user can "
                         f"write") from None


def visible_gpus(args: argparse.Namespace, device: str) -> List[Optional[str]]:
    """The GPUs of --gpus (CUDA_VISIBLE_DEVICES values), or [None] on the CPU; UsageError saying what to use."""
    from ..training.sweep import slots

    try:
        return slots(1, args.gpus, device)
    except ValueError as err:
        raise UsageError(f"{err}; on the CPU, give --workers N for N workers") from None
