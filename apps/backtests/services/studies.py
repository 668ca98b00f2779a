"""Where Optuna keeps the shared studies of TPE optimisations.

``settings.OPTUNA_STORAGE_URL`` (an SQLAlchemy URL) when set. Otherwise the platform's own
database, read at run time from the live connection (so the test runner's database is used in
tests): PostgreSQL as ``postgresql+psycopg://user:password@host:port/name``, an SQLite file as
``sqlite:///path``. An in-memory SQLite database cannot be opened by a second driver, and the
test suite's SQLite file is held by each test's transaction for the whole test (a second driver
would wait on it in vain): there (or with ``settings.OPTUNA_STUDY_FILES``, which the test
settings set) each study gets its own SQLite file under ``settings.OPTUNA_DATA_DIR``
(``<study name>.sqlite3``); study names carry a random suffix, so a file is never reused by
another run.
"""

from pathlib import Path
from urllib.parse import quote

from django.conf import settings
from django.db import connection


def _is_memory(name: str) -> bool:
    return name in ("", ":memory:") or "mode=memory" in name


def optuna_storage_url(*, study_name: str) -> str:
    """The SQLAlchemy URL of the storage holding ``study_name`` (see the module docstring)."""
    configured: str = settings.OPTUNA_STORAGE_URL
    if configured:
        return configured
    db = connection.settings_dict
    if connection.vendor == "postgresql":
        user = quote(str(db.get("USER") or ""), safe="")
        password = quote(str(db.get("PASSWORD") or ""), safe="")
        auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
        host = str(db.get("HOST") or "localhost")
        port = f":{db['PORT']}" if db.get("PORT") else ""
        return f"postgresql+psycopg://{auth}{host}{port}/{quote(str(db['NAME']), safe='')}"
    if connection.vendor == "sqlite":
        name = str(db.get("NAME") or "")
        if _is_memory(name) or getattr(settings, "OPTUNA_STUDY_FILES", False):
            folder = Path(settings.OPTUNA_DATA_DIR)
            folder.mkdir(parents=True, exist_ok=True)
            return f"sqlite:///{folder / f'{study_name}.sqlite3'}"
        return f"sqlite:///{Path(name).resolve()}"
    raise RuntimeError(f"Set OPTUNA_STORAGE_URL: no default Optuna storage for {connection.vendor}.")


def optuna_storage_is_per_study(*, study_name: str) -> bool:
    """True when the study has a storage of its own (the in-memory SQLite fallback), whose
    connections should be closed once the study is done with."""
    return optuna_storage_url(study_name=study_name).endswith(f"/{study_name}.sqlite3")
