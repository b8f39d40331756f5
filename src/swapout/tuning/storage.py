"""Where a study lives: an Optuna relational storage that any number of workers share.

A SQLite file in the study's folder serves one machine; ``postgresql://`` (or ``mysql://``) serves many. The
storage has heartbeats: a worker records one for each trial it runs every ``heartbeat`` seconds, and any
worker fails a trial whose heartbeat is older than ``grace`` seconds and puts a copy of it back in the queue
(Optuna's `RetryHeartbeatStaleTrialCallback`), with its parameters, its user
attributes (the run directory among them) and its reports, so that another worker resumes it.

A study records what it is (``kind``, preset, config, space, objective) as its user attribute ``swapout``;
a worker that brings anything else is refused, so one study is one search.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Dict, Optional

__all__ = ["StorageError", "import_optuna", "storage_url", "open_storage", "open_study", "storage_errors", "shown"]


class StorageError(RuntimeError):
    """The study's database went away while a worker used it."""


def import_optuna():
    """Optuna, or a ValueError saying how to install it (it is an optional dependency)."""
    try:
        import optuna
    except ImportError:
        raise ValueError("this command needs Optuna: pip install 'swapout[tune]' (Optuna, and psycopg for "
                         "PostgreSQL)") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # Heartbeats and stale-trial retries are marked experimental, and Optuna documents heartbeats for
    # study.optimize(); the workers record them themselves (swapout.tuning.trial_run.Heartbeat), so the
    # warnings would only repeat at every trial.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning, module="optuna")
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning, module="swapout")
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
    return optuna


def storage_errors() -> tuple:
    """The exceptions that mean "the database cannot be reached" (resolved on use: Optuna is optional)."""
    import optuna
    import sqlalchemy.exc

    return (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError, sqlalchemy.exc.DBAPIError,
            optuna.exceptions.StorageInternalError)


def storage_url(storage: Optional[str], study_dir: Path) -> str:
    """The storage's URL: ``storage`` as given (``postgresql://`` uses psycopg 3 when psycopg2 is absent), or a
    SQLite file ``study.db`` in ``study_dir``."""
    if storage is None:
        return f"sqlite:///{Path(study_dir).resolve() / 'study.db'}"
    if "://" not in storage:
        raise ValueError(f"--storage must be a database URL such as postgresql://user:password@host/db, "
                         f"mysql://..., or sqlite:///path, got {storage!r}")
    if storage.startswith("postgresql://"):
        import importlib.util

        if importlib.util.find_spec("psycopg2") is None and importlib.util.find_spec("psycopg") is not None:
            storage = "postgresql+psycopg://" + storage[len("postgresql://"):]
    return storage


def shown(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # a URL SQLAlchemy cannot parse is shown as given: the error says why
        return url


def open_storage(url: str, heartbeat: int = 10, grace: int = 60):
    """An RDBStorage with heartbeats; ValueError in one line if the database cannot be reached."""
    optuna = import_optuna()
    engine: Dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith(("postgresql", "mysql")):
        engine["connect_args"] = {"connect_timeout": 10}
    try:
        return optuna.storages.RDBStorage(
            url, engine_kwargs=engine, heartbeat_interval=heartbeat, grace_period=grace,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                inherit_intermediate_values=True))
    except ModuleNotFoundError as err:
        raise ValueError(f"--storage {shown(url)}: its database driver is not installed ({err.name}); for "
                         f"PostgreSQL: pip install 'psycopg[binary]'") from None
    except (ImportError, ValueError) as err:
        raise ValueError(f"--storage {shown(url)}: {str(err).splitlines()[0]}") from None
    except storage_errors() as err:
        reason = str(getattr(err, "orig", err) or err).strip().splitlines()[0]
        raise ValueError(f"--storage {shown(url)}: cannot reach the database ({reason})") from None


def _differences(saved: Dict[str, Any], given: Dict[str, Any]) -> str:
    keys = sorted(k for k in set(saved) | set(given) if saved.get(k) != given.get(k))
    return "; ".join(f"{k}: study {json.dumps(saved.get(k))}, given {json.dumps(given.get(k))}" for k in keys)


def open_study(storage, name: str, identity: Dict[str, Any], sampler=None, pruner=None):
    """Create the study ``name`` recording ``identity``, or join it if it exists with the same identity.

    ValueError (one line) if it exists and is another search: another kind, preset, config, space or
    objective. Returns ``(study, created)``.
    """
    optuna = import_optuna()
    try:
        try:
            study = optuna.create_study(storage=storage, study_name=name, direction="minimize", sampler=sampler,
                                        pruner=pruner, load_if_exists=False)
            study.set_user_attr("swapout", identity)
            return study, True
        except optuna.exceptions.DuplicatedStudyError:
            study = optuna.load_study(storage=storage, study_name=name, sampler=sampler, pruner=pruner)
    except storage_errors() as err:
        raise ValueError(f"the study's database cannot be reached ({str(err).splitlines()[0]})") from None
    saved = study.user_attrs.get("swapout")
    if saved is None:
        raise ValueError(f"study {name!r} exists in this storage and was not made by swapout; choose another --study")
    if saved != identity:
        raise ValueError(f"study {name!r} exists and is another search ({_differences(saved, identity)}); join it "
                         f"with the same options, or choose another --study")
    return study, False
