"""Run a PostgreSQL 15 cluster for development, the demo and the tests.

The server refuses to run as root, so when we are root every server-side command runs as the
unprivileged `postgres` user (through `bin/pg_ctl`), and every file the server must reach is
placed where that user can reach it. The same code serves `qbo-sync db` and the test harness.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PG_CTL = PROJECT_ROOT / "bin" / "pg_ctl"
PG_BIN = Path(os.environ.get("QBO_SYNC_PG_BIN", "/usr/lib/postgresql/15/bin"))
SERVER_USER = os.environ.get("QBO_SYNC_SERVER_USER", "postgres")
SUPERUSER = "postgres"

#: A `port = …` line of postgresql.conf (commented-out defaults start with `#` and do not match).
PORT_LINE = re.compile(r"^\s*port\s*=?\s*'?(\d+)'?", re.MULTILINE)

#: Secrets the database reads from its secrets file (never from a table or a GUC).
SECRET_NAMES = (
    "QBO_SYNC_TOKEN_KEY",
    "QBO_WEBHOOK_VERIFIER_TOKEN",
    "QBO_CLIENT_ID",
    "QBO_CLIENT_SECRET",
)


def running_as_root() -> bool:
    return os.geteuid() == 0


def as_server_user(argv: list[str]) -> list[str]:
    """Prefix a command so that it runs as the server user when we are root."""
    if running_as_root():
        return ["runuser", "-u", SERVER_USER, "--", *argv]
    return argv


def give_to_server_user(path: Path, mode: int = 0o700) -> None:
    """Make `path` owned by the server user (when root) with `mode`."""
    if running_as_root():
        entry = pwd.getpwnam(SERVER_USER)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    os.chmod(path, mode)


def server_user_can_reach(path: Path) -> bool:
    """True when the server user can traverse every directory down to `path`."""
    if not running_as_root():
        return True
    result = subprocess.run(
        as_server_user(["test", "-x", str(path)]), cwd="/", capture_output=True, check=False
    )
    return result.returncode == 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_settings(
    port: int, socket_dir: Path, cron_database: str, secrets_file: Path
) -> dict[str, str]:
    """The settings every qbo-sync cluster runs with."""
    return {
        "port": str(port),
        "listen_addresses": "127.0.0.1",
        "unix_socket_directories": str(socket_dir),
        "shared_preload_libraries": "pg_cron",
        "cron.database_name": cron_database,
        "cron.use_background_workers": "on",
        "max_worker_processes": "32",
        "max_connections": "100",
        "qbo_sync.secrets_file": str(secrets_file),
    }


def write_secrets_file(path: Path, values: dict[str, str] | None = None) -> None:
    """Create the secrets file the database reads (random values unless given)."""
    values = dict(values or {})
    for name in SECRET_NAMES:
        values.setdefault(name, secrets.token_urlsafe(32))
    lines = [f"{name}={value}" for name, value in sorted(values.items())]
    path.write_text("\n".join(lines) + "\n")
    give_to_server_user(path, 0o600)


@dataclass
class Cluster:
    """A PostgreSQL cluster in a directory of its own."""

    base_dir: Path
    port: int
    database: str = "qbo_sync"
    extra_settings: dict[str, str] = field(default_factory=dict)

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.base_dir / "run"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "run" / "postgresql.log"

    @property
    def secrets_file(self) -> Path:
        return self.base_dir / "secrets.env"

    def dsn(self, database: str | None = None) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database or self.database}"

    def _pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(PG_CTL), *args], capture_output=True, text=True, check=check, cwd="/"
        )

    def initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def stored_port(self) -> int | None:
        """The port the server listens on, from its configuration (None before `init`).

        postgresql.auto.conf (ALTER SYSTEM) wins over postgresql.conf, as in the server.
        """
        port = None
        for name in ("postgresql.conf", "postgresql.auto.conf"):
            path = self.data_dir / name
            if path.exists():
                found = PORT_LINE.findall(path.read_text())
                if found:
                    port = int(found[-1])
        return port

    def init(self) -> None:
        """Create the cluster, its settings and its secrets file (once)."""
        self.base_dir.mkdir(parents=True, exist_ok=True)
        give_to_server_user(self.base_dir, 0o755)
        if self.initialised():
            return
        for directory in (self.data_dir, self.socket_dir):
            directory.mkdir(exist_ok=True)
            give_to_server_user(directory, 0o700 if directory == self.data_dir else 0o755)
        self._pg_ctl(
            "initdb",
            "-D",
            str(self.data_dir),
            "-o",
            f"--username={SUPERUSER} --auth=trust --encoding=UTF8 --locale=C.UTF-8",
        )
        if not self.secrets_file.exists():
            write_secrets_file(self.secrets_file)
        settings = server_settings(self.port, self.socket_dir, self.database, self.secrets_file)
        settings.update(self.extra_settings)
        conf = "\n".join(f"{key} = '{value}'" for key, value in settings.items())
        with open(self.data_dir / "postgresql.conf", "a") as handle:
            handle.write("\n# qbo-sync\n" + conf + "\n")

    def running(self) -> bool:
        if not self.initialised():
            return False
        return self._pg_ctl("status", "-D", str(self.data_dir), check=False).returncode == 0

    def start(self) -> None:
        self.init()
        if self.running():
            return
        self.socket_dir.mkdir(exist_ok=True)
        give_to_server_user(self.socket_dir, 0o755)
        result = self._pg_ctl(
            "start",
            "-w",
            "-t",
            "60",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_file),
            check=False,
        )
        if result.returncode != 0:
            log = self.log_file.read_text()[-2000:] if self.log_file.exists() else ""
            raise RuntimeError(f"PostgreSQL did not start: {result.stderr.strip()}\n{log}")
        self.ensure_database()

    def ensure_database(self) -> None:
        import psycopg

        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)
            ).fetchone()
            if not exists:
                from psycopg import sql

                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))

    def stop(self) -> None:
        if self.running():
            self._pg_ctl("stop", "-D", str(self.data_dir), "-m", "fast", "-w")

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.base_dir, ignore_errors=True)


HOME_VARIABLE = "QBO_SYNC_HOME"


def local_home() -> Path:
    """Where the local development pieces live (the cluster, the demo's processes and logs):
    $QBO_SYNC_HOME, else `.local` in the project."""
    home = Path(os.environ.get(HOME_VARIABLE, "").strip() or PROJECT_ROOT / ".local")
    home.mkdir(parents=True, exist_ok=True)
    return home


def local_cluster_dir() -> Path:
    """Where `qbo-sync db` keeps its cluster: `pg` in local_home() (`.local/pg`).

    When we are root and the server user cannot reach that directory (a clone under /root, say),
    the cluster lives under /var/tmp and `pg` is a symlink to it.
    """
    local = local_home()
    link = local / "pg"
    if link.exists():
        return link.resolve()
    if server_user_can_reach(local):
        link.mkdir()
        return link
    digest = hashlib.sha256(str(local.resolve()).encode()).hexdigest()[:12]
    outside = Path("/var/tmp") / f"qbo-sync-{digest}"
    outside.mkdir(parents=True, exist_ok=True)
    link.symlink_to(outside)
    return outside


DEFAULT_LOCAL_PORT = 54315
PORT_VARIABLE = "QBO_SYNC_DB_PORT"


def requested_local_port() -> int:
    """The port for a new local cluster: $QBO_SYNC_DB_PORT, else 54315."""
    value = os.environ.get(PORT_VARIABLE, "").strip()
    if not value:
        return DEFAULT_LOCAL_PORT
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise ValueError(f"{PORT_VARIABLE}={value!r} is not a port number (1-65535)")
    return int(value)


def local_cluster(port: int | None = None) -> Cluster:
    """The project's development cluster (`qbo-sync db start|stop|status`).

    An existing cluster keeps the port it was created with (read back from its configuration);
    `port` (default: `requested_local_port()`) only picks the port of a cluster not created yet.
    """
    cluster = Cluster(base_dir=local_cluster_dir(), port=port or requested_local_port())
    stored = cluster.stored_port()
    if stored is not None:
        cluster.port = stored
    return cluster
