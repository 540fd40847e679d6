"""Open and check the Optuna storage of a search before any work is done.

``check_storage`` is called by ``run_search`` before pre-training: a URL whose driver is not
installed, a server that does not answer, wrong credentials or a database that does not exist
end in one :class:`StorageError` naming the URL (password hidden), which the CLI turns into
exit code 2 - not a traceback after minutes of pre-training.

Supported URLs (the driver of each ships with ``make setup``):

- nothing: SQLite in ``<run_dir>/study.db``;
- ``sqlite:///path/study.db``;
- ``journal:PATH`` (Optuna's journal file, several local processes);
- ``postgresql://user:password@host:5432/db`` (psycopg 3, the ``psycopg[binary]`` dependency),
  also ``postgresql+psycopg://``; ``postgresql+psycopg2://`` needs ``pip install
  psycopg2-binary``; ``mysql+pymysql://`` needs ``pip install pymysql``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import ConfigError

__all__ = ["StorageError", "check_storage", "expand_env", "redact", "scrub"]


class StorageError(ConfigError):
    """The Optuna storage cannot be opened; the message names the URL and the cause."""


_DRIVER_HINTS = {
    "psycopg2": "pip install psycopg2-binary, or write the URL as postgresql:// (psycopg 3, "
                "installed with entropic-nas)",
    "psycopg": "pip install 'entropic-nas[postgres]' (psycopg 3; make setup installs it)",
    "pymysql": "pip install pymysql",
    "MySQLdb": "pip install mysqlclient, or write the URL as mysql+pymysql://",
}


_CREDENTIALS = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@'\"]+:)([^\s@'\"]+)(@)")


def scrub(text: str) -> str:
    """Every ``scheme://user:password@`` in ``text`` with the password as ``***`` (messages,
    logs, summaries: whatever may leave the process)."""
    return _CREDENTIALS.sub(r"\1***\3", text)


def expand_env(url: str, *, field: str = "search.storage") -> str:
    """``${NAME}`` in a storage URL replaced by the environment variable ``NAME`` (the
    documented way to keep a password out of configs, logs and W&B; libpq's ``PGPASSWORD``
    and ``~/.pgpass`` work too, with no password in the URL at all)."""
    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in os.environ:
            raise StorageError(f"{field}: the environment variable {name} named in the URL "
                               "is not set")
        return os.environ[name]

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", sub, url)


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***``."""
    if "://" not in url or "@" not in url:
        return url
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not an SQLAlchemy URL: hide everything before the @
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"


def _root(exc: BaseException) -> BaseException:
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


def _cause(exc: BaseException) -> str:
    root = _root(exc)
    missing = getattr(root, "name", None) if isinstance(root, ModuleNotFoundError) else None
    if missing in _DRIVER_HINTS:
        return f"its database driver {missing!r} is not installed ({_DRIVER_HINTS[missing]})"
    text = " ".join(str(root).split())
    if "NoSuchModuleError" in type(root).__name__ or "Can't load plugin" in text:
        return f"SQLAlchemy has no dialect for this URL ({text})"
    return f"{type(root).__name__}: {text[:400]}"


def check_storage(storage: str | None, run_dir: str | Path) -> str:
    """Open the storage, list its studies, close it; return the URL the search will use.

    ``None`` (SQLite in ``run_dir/study.db``) is not opened here: nothing is written before
    the run is known to proceed.

    Raises:
        StorageError: the storage cannot be opened or queried (driver missing, server down,
            bad credentials, no such database, malformed URL).
    """
    from .study import default_storage_url, open_storage

    if storage is None:  # the embedded default: a new SQLite file, created with the run dir
        return default_storage_url(run_dir)
    url = storage  # ${VAR} is expanded where the storage is opened: no password in files
    expand_env(url)  # an unset variable is named here, before any work
    try:
        store = open_storage(url, run_dir)
        store.get_all_studies()
    except Exception as exc:  # noqa: BLE001 - every cause becomes one message naming the URL
        raise StorageError(
            f"storage {redact(url)}: cannot open it: {_cause(exc)}. Check --storage / "
            "search.storage (see docs/operations.md, 'Running on a cluster')"
        ) from None
    engine = getattr(store, "engine", None)
    if engine is not None:
        engine.dispose()  # the search opens its own connections (with a heartbeat)
    return url
