"""The test suite: the same settings as dev, with fast hashing and mail kept in memory."""

from .base import *  # noqa: F403
from .base import env

DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
SECRET_KEY = env("SECRET_KEY", default="test-only-secret-key-" + "t" * 40)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not SQLite's shared-cache in-memory database: there a second writer (the embedded
    # worker thread of a live-server test) is refused at once ("database table is locked")
    # instead of waiting, which busy_timeout cannot help. In a file with WAL it waits (OPTIONS
    # in base.py). One file per test process (pytest-xdist's processes, or two runs side by side),
    # removed when the run ends.
    import os

    (BASE_DIR / "var").mkdir(exist_ok=True)
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / "var" / f"test-db-{os.getpid()}.sqlite3")}
    # Optuna's own SQLite connection could not write to that file while a test's transaction
    # holds it: each study gets a file of its own (apps.backtests.services.studies).
    OPTUNA_STUDY_FILES = True
