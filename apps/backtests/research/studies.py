"""Optuna studies stored in a database (SQLAlchemy URLs), shared by every worker that opens them.

The platform keeps its studies in its own database (PostgreSQL in production, the SQLite file in
embedded mode); :func:`sqlalchemy_url` turns a DATABASE_URL into the URL Optuna needs. Trials are
run by :func:`apps.backtests.research.optimise.trials_run`.
"""

import contextlib
import os
import sqlite3
from typing import Any, Literal

import optuna
import sqlalchemy


def sqlalchemy_url(database_url: str) -> str:
    """The SQLAlchemy URL for a DATABASE_URL (``postgres://`` -> ``postgresql+psycopg://``, the
    driver installed here); ``sqlite:///path`` passes through."""
    for prefix in ("postgres://", "postgresql://", "pgsql://"):
        if database_url.startswith(prefix):
            return "postgresql+psycopg://" + database_url[len(prefix) :]
    return database_url


_STORAGES: dict[tuple[int, str], optuna.storages.RDBStorage] = {}


def storage_open(storage_url: str) -> optuna.storages.RDBStorage:
    """This process's Optuna storage for ``storage_url`` (created on first use; the tables too).

    One engine (connection pool) per process and URL, keyed by pid so that a forked worker never
    reuses its parent's connections."""
    key = (os.getpid(), storage_url)
    storage = _STORAGES.get(key)
    if storage is None:
        engine_kwargs = _sqlite_engine_kwargs(storage_url) if storage_url.startswith("sqlite") else {}
        storage = optuna.storages.RDBStorage(storage_url, engine_kwargs=engine_kwargs)
        _STORAGES[key] = storage
    return storage


def storage_dispose(storage_url: str) -> None:
    """Close this process's connections to ``storage_url`` (at worker shutdown, or before the
    database is dropped); the next use reconnects."""
    storage = _STORAGES.pop((os.getpid(), storage_url), None)
    if storage is not None:
        storage.engine.dispose()


def _sqlite_engine_kwargs(storage_url: str) -> dict[str, Any]:
    """Connections for a study in an SQLite file (the embedded mode): Optuna commits ~6 times per
    trial, and in SQLite's default rollback journal each commit is a sync of the file (5 ms here),
    so trials would queue on the disk. Write-ahead logging with synchronous=NORMAL syncs at
    checkpoints instead, and lets readers proceed while a worker writes; a writer waits up to 60 s
    for the lock instead of failing."""
    path = sqlalchemy.engine.make_url(storage_url).database or ""

    def connect() -> sqlite3.Connection:
        connection = sqlite3.connect(path, timeout=60, check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        return connection

    return {"creator": connect} if path and path != ":memory:" else {"connect_args": {"timeout": 60}}


def study_create(
    storage_url: str,
    study_name: str,
    *,
    direction: Literal["maximize", "minimize"] = "maximize",
    seed: int | None = None,
) -> None:
    """Create the study (idempotent: an existing one is kept) and record its seed."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        storage=storage_open(storage_url), study_name=study_name, direction=direction, load_if_exists=True
    )
    if "seed" not in study.user_attrs:
        study.set_user_attr("seed", seed)


def study_delete(storage_url: str, study_name: str) -> None:
    """Remove the study and its trials (no error when it is already gone)."""
    with contextlib.suppress(KeyError):
        optuna.delete_study(study_name=study_name, storage=storage_open(storage_url))
