"""Where a study lives: an Optuna relational storage that any number of workers share.

A SQLite file in the study's folder serves one machine; ``postgresql://`` (or ``mysql://``) serves many. The
storage has heartbeats: a worker records one for each trial it runs every ``heartbeat`` seconds, and any
worker fails a trial whose heartbeat is older than ``grace`` seconds and puts a copy of it back in the queue
(Optuna's `RetryHeartbeatStaleTrialCallback`), with its parameters, its user
attributes (the run directory among them) and its reports, so that another worker resumes it.

A study records what it is (``kind``, preset, config, space, objective) as its user attribute ``swapout``;
a worker that brings anything else is refused, so one study is one search.

What must happen one worker at a time (making the study on an empty database, drawing a trial, choosing who
writes the summary) happens under the storage's one lock (`study_lock`), so that workers started at the same
moment neither create Optuna's tables twice nor draw against a history that lacks another's draw.
"""

from __future__ import annotations

import json
import re
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Tuple

__all__ = ["StorageError", "import_optuna", "storage_url", "open_storage", "open_study", "storage_errors", "shown",
           "study_lock", "check_study_name"]

BACKENDS = ("postgresql", "mysql", "sqlite")
_EXPECTED = "postgresql://user@host/db (password from ~/.pgpass or PGPASSWORD), mysql+pymysql://..., or sqlite:///path"
# the drivers SQLAlchemy tries first for a URL without one, and what to install instead
_DRIVERS = {"postgresql": "pip install 'psycopg[binary]'",
            "mysql": "pip install PyMySQL, and write the URL as mysql+pymysql://..."}
_LOCK_KEY = 0x53574150_4F5554  # "SWAPOUT": PostgreSQL's advisory locks are keyed by a number


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
    """The storage's URL, checked before anything is created.

    Args:
        storage: the ``--storage`` URL as given (``postgres://`` is read as ``postgresql://``, which uses
            psycopg 3 when psycopg2 is absent), or None.
        study_dir: the study's folder, which holds the SQLite file ``study.db`` when ``storage`` is None.

    Returns:
        The URL that SQLAlchemy opens.

    Raises:
        ValueError: in one line, for a URL that cannot be parsed or names another kind of database.
    """
    if storage is None:
        return f"sqlite:///{Path(study_dir).resolve() / 'study.db'}"
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    if "://" not in storage:
        raise ValueError(f"--storage must be a database URL such as {_EXPECTED}; got {shown(storage)!r}")
    if storage.startswith("postgres://"):  # Heroku's and libpq's spelling, which SQLAlchemy does not know
        storage = "postgresql://" + storage[len("postgres://"):]
    try:
        parsed = make_url(storage)
        parsed.port  # noqa: B018 (a port that is not a number fails here)
    except (ArgumentError, ValueError) as err:
        why = "its port is not a number" if "int()" in str(err) else str(err).splitlines()[0]
        raise ValueError(f"--storage {shown(storage)}: not a database URL ({why}); expected {_EXPECTED}") from None
    if parsed.get_backend_name() not in BACKENDS:
        raise ValueError(f"--storage {shown(storage)}: unknown database {parsed.get_backend_name()!r}; expected "
                         f"{_EXPECTED}")
    if parsed.get_backend_name() == "sqlite":
        _check_sqlite_file(storage, parsed.database, study_dir)
    if parsed.drivername == "postgresql":
        import importlib.util

        if importlib.util.find_spec("psycopg2") is None and importlib.util.find_spec("psycopg") is not None:
            storage = "postgresql+psycopg://" + storage[len("postgresql://"):]
    return storage


def _check_sqlite_file(storage: str, database: Optional[str], study_dir: Path) -> None:
    """A SQLite study is a file the workers share: an in-memory one would be each process's own, and a file
    in a folder that does not exist cannot be created (the study's own folder, which is made, excepted)."""
    if not database or database == ":memory:":
        raise ValueError(f"--storage {storage}: an in-memory SQLite database lives in this process alone, where "
                         f"no other worker can share it; "
                         f"give a file, sqlite:///path/to/study.db")
    folder = Path(database).parent
    if not folder.is_dir() and not (folder.resolve() == Path(study_dir).resolve() and not folder.exists()):
        raise ValueError(f"--storage {storage}: the folder {folder} of the database " +
                         ("is a file" if folder.exists() else "does not exist") + "; create it, or choose another")


def shown(url: str) -> str:
    """``url`` without its password (``***`` in its place), for messages, logs and files.

    Args:
        url: a database URL, parsable or not.

    Returns:
        The URL with any password masked.
    """
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # a URL SQLAlchemy cannot parse: mask what stands where a password would
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def check_study_name(name: str) -> str:
    """``name`` if Optuna can store it as a study's name; ValueError in one line otherwise.

    Args:
        name: the ``--study`` name.

    Returns:
        ``name``.

    Raises:
        ValueError: if it is empty or longer than Optuna's 512 characters.
    """
    if not name.strip():
        raise ValueError("--study must name the study: give a non-empty name, or leave it out for the default")
    if len(name) > 512:
        raise ValueError(f"--study: a study's name holds at most 512 characters (Optuna's limit), got {len(name)}")
    return name


def _no_driver(url: str, err: ModuleNotFoundError) -> ValueError:
    backend = url.split(":")[0].split("+")[0]
    return ValueError(f"--storage {shown(url)}: its database driver is not installed ({err.name}): "
                      f"{_DRIVERS.get(backend, 'install the driver SQLAlchemy names for it')}")


@contextmanager
def study_lock(url: str) -> Iterator[None]:
    """Hold the storage's one lock: a PostgreSQL advisory lock or MySQL's named lock on a connection of its own
    (released by the server if the worker dies), or a lock on a file beside a SQLite database (one machine).

    Args:
        url: the storage's URL, as `storage_url` returns it.

    Yields:
        Nothing; the lock is held until the block ends.
    """
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.pool import NullPool

    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            yield
            return
        import fcntl

        with open(f"{parsed.database}.lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            yield  # closing the file releases the lock, also on an exception
        return
    locks: Dict[str, Tuple[str, str, Dict[str, Any]]] = {
        "postgresql": ("SELECT pg_advisory_lock(:k)", "SELECT pg_advisory_unlock(:k)", {"k": _LOCK_KEY}),
        "mysql": ("SELECT GET_LOCK(:k, -1)", "SELECT RELEASE_LOCK(:k)", {"k": "swapout"})}
    take, give, values = locks[backend]
    try:
        engine = create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": 10})
    except ModuleNotFoundError as err:
        raise _no_driver(url, err) from None
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(take), values)
            try:
                yield
            finally:
                conn.execute(text(give), values)
    finally:
        engine.dispose()


def open_storage(url: str, heartbeat: int = 10, grace: int = 60):
    """An RDBStorage with heartbeats; ValueError in one line if the database cannot be reached.

    Args:
        url: the storage's URL, as `storage_url` returns it.
        heartbeat: seconds between a running trial's heartbeats.
        grace: seconds after its last heartbeat at which a trial counts as dead and is retried.

    Returns:
        An ``optuna.storages.RDBStorage``.

    Raises:
        ValueError: in one line, naming the database without its password: no driver, unreachable, or refused.
    """
    optuna = import_optuna()
    import sqlalchemy.exc

    engine: Dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith(("postgresql", "mysql")):
        engine["connect_args"] = {"connect_timeout": 10}
    try:
        return optuna.storages.RDBStorage(
            url, engine_kwargs=engine, heartbeat_interval=heartbeat, grace_period=grace,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                inherit_intermediate_values=True))
    except ModuleNotFoundError as err:
        raise _no_driver(url, err) from None
    except (ImportError, ValueError) as err:
        raise ValueError(f"--storage {shown(url)}: {str(err).splitlines()[0]}") from None
    except storage_errors() as err:
        reason = str(getattr(err, "orig", err) or err).strip().splitlines()[0]
        what = "cannot reach the database" if isinstance(err, (sqlalchemy.exc.OperationalError,
                                                              sqlalchemy.exc.InterfaceError)) else \
            "the database refused Optuna's tables"
        raise ValueError(f"--storage {shown(url)}: {what} ({reason})") from None


def _differences(saved: Dict[str, Any], given: Dict[str, Any], prefix: str = "") -> str:
    """The fields that differ, ``key: study X, given Y``; within a config, only its fields that differ."""
    parts = []
    for k in sorted(k for k in set(saved) | set(given) if saved.get(k) != given.get(k)):
        a, b = saved.get(k), given.get(k)
        parts.append(_differences(a, b, f"{prefix}{k}.") if isinstance(a, dict) and isinstance(b, dict) else
                     f"{prefix}{k}: study {json.dumps(a)}, given {json.dumps(b)}")
    return "; ".join(parts)


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
    if saved.get("kind") != identity["kind"]:
        what = {"tune": "a search (swapout tune)", "sweep": "a campaign (swapout sweep --storage)"}
        raise ValueError(f"study {name!r} exists and is {what.get(saved.get('kind'), saved.get('kind'))}, not "
                         f"{what[identity['kind']]}; choose another --study")
    if {k for k in set(saved) | set(identity) if saved.get(k) != identity.get(k)} == {"trials"}:
        raise ValueError(f"study {name!r} was made for --trials {saved['trials']}, and a study's number of trials is "
                         f"fixed when it is made: give --trials {saved['trials']} to join it, or a new --study to "
                         f"search further")
    if saved != identity:
        raise ValueError(f"study {name!r} exists and is another search ({_differences(saved, identity)}); join it "
                         f"with the same options, or choose another --study")
    return study, False
