"""A private PostgreSQL cluster for the Dagster instance of the scale-out path.

    python -m ubap_assets.scale.postgres start|stop|status|url|check [--data-dir DIR]

The cluster runs from the distribution's PostgreSQL binaries (Debian: ``/usr/lib/postgresql/<v>/
bin``, the newest installed version, or the one the cluster was created with) and lives under
``<data dir>/scale/postgres``: ``data/`` (the cluster), ``socket/`` (its Unix socket),
``postgres.log``. It listens on ``UBAP_PG_HOST:UBAP_PG_PORT`` only (127.0.0.1:5433 by default, so
it does not collide with a system PostgreSQL on 5432). TCP logins need a password
(scram-sha-256); the Unix socket admits the cluster's owner only (peer), which is how ``start``
creates the role ``UBAP_PG_USER`` with the password ``UBAP_PG_PASSWORD`` and the database
``UBAP_PG_DB`` it owns. PostgreSQL refuses to run as root, so as root the cluster belongs to the
``postgres`` OS user and every server command runs as that user (``runuser``).

``start`` is idempotent (a running cluster is left running; the role's password is synced to
``UBAP_PG_PASSWORD``). ``check`` is what ``make up-scale`` asks before starting Dagster: it logs in
as the instance will and explains what to do when it cannot. Every failure is a
``PostgresError`` whose message names the setting and the fix.
"""

import argparse
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

HOST_VAR = "UBAP_PG_HOST"
PORT_VAR = "UBAP_PG_PORT"
USER_VAR = "UBAP_PG_USER"
DB_VAR = "UBAP_PG_DB"
PASSWORD_VAR = "UBAP_PG_PASSWORD"
DEFAULTS = {HOST_VAR: "127.0.0.1", PORT_VAR: "5433", USER_VAR: "ubap", DB_VAR: "dagster"}

DEBIAN_PG_ROOT = Path("/usr/lib/postgresql")
SERVER_USER = "postgres"  # the OS user that runs the cluster when we are root
INSTALL_HINT = "install PostgreSQL (Debian: `apt-get install postgresql`, or `make install-scale`)"
START_HINT = "start it with `make pg-start` (python -m ubap_assets.scale.postgres start)"
# Unix socket paths are limited to 107 bytes (sun_path); the socket file is .s.PGSQL.<port>.
MAX_SOCKET_PATH = 107
SERVER_CONF = "ubap_server.conf"  # written on every start: address, port, socket folder
START_TIMEOUT_S = 60


class PostgresError(RuntimeError):
    """A problem the user can fix; the message names the setting and the fix."""


@dataclass(frozen=True)
class PgConfig:
    """Where the Dagster instance finds its database (the ``UBAP_PG_*`` variables)."""

    host: str
    port: int
    user: str
    db: str
    password: str  # empty = unset

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "PgConfig":
        env = os.environ if environ is None else environ
        values = {
            name: (env.get(name) or "").strip() or default for name, default in DEFAULTS.items()
        }
        raw_port = values[PORT_VAR]
        if not raw_port.isdigit() or not 1 <= int(raw_port) <= 65535:
            raise PostgresError(
                f"{PORT_VAR}={raw_port!r} is not a TCP port: set it to a number between 1 and "
                f"65535 (default {DEFAULTS[PORT_VAR]}), or unset it"
            )
        for name in (USER_VAR, DB_VAR):
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", values[name]):
                raise PostgresError(
                    f"{name}={values[name]!r} is not a plain PostgreSQL name: use letters, digits "
                    f"and underscores (default {DEFAULTS[name]}), or unset it"
                )
        return cls(
            host=values[HOST_VAR],
            port=int(raw_port),
            user=values[USER_VAR],
            db=values[DB_VAR],
            password=env.get(PASSWORD_VAR) or "",
        )

    def url(self) -> str:
        """The connection URL without the password (that comes from ``UBAP_PG_PASSWORD``)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"postgresql://{self.user}@{host}:{self.port}/{self.db}"

    def where(self) -> str:
        return f"{HOST_VAR}={self.host} {PORT_VAR}={self.port}"

    def require_password(self) -> str:
        if not self.password:
            raise PostgresError(
                f"{PASSWORD_VAR} is not set: export the instance database's password in "
                f"{PASSWORD_VAR} (`make pg-start` and `make up-scale` generate one into "
                "<data dir>/scale/pg_password and export it)"
            )
        return self.password


@dataclass(frozen=True)
class Cluster:
    """The private cluster's folder: ``data/`` (PGDATA), ``socket/``, ``postgres.log``."""

    root: Path

    @classmethod
    def under(cls, data_dir: Path | None = None) -> "Cluster":
        """The cluster of a data directory (unset: ``UBAP_DATA_DIR``, else the repo's data/)."""
        if data_dir is None:
            from ubap_assets.warehouse import paths

            data_dir = paths.data_dir()
        return cls(Path(data_dir).absolute() / "scale" / "postgres")

    @property
    def pgdata(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "socket"

    @property
    def log_file(self) -> Path:
        return self.root / "postgres.log"

    @property
    def initialized(self) -> bool:
        return (self.pgdata / "PG_VERSION").is_file()

    def version(self) -> str | None:
        """The major version the cluster was created with, if it exists."""
        return (self.pgdata / "PG_VERSION").read_text().strip() if self.initialized else None

    def running_port(self) -> int | None:
        """The port in postmaster.pid (line 4), if the file is there."""
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
        except OSError:
            return None
        return int(lines[3]) if len(lines) > 3 and lines[3].strip().isdigit() else None


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", path.name)) or (0,)


def find_bin_dir(version: str | None = None) -> Path:
    """The folder of initdb/pg_ctl/psql: Debian's ``/usr/lib/postgresql/<version>/bin`` (the given
    version, else the newest), else wherever ``pg_ctl`` is on PATH."""
    candidates = [
        d / "bin"
        for d in sorted(DEBIAN_PG_ROOT.glob("*"), key=_version_key, reverse=True)
        if (d / "bin" / "pg_ctl").is_file() and (d / "bin" / "initdb").is_file()
    ]
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    if version is not None:
        matching = [d for d in candidates if _bin_version(d) == version]
        if matching:
            return matching[0]
        raise PostgresError(
            f"the cluster was created with PostgreSQL {version}, whose binaries are not "
            f"installed: install them (Debian: `apt-get install postgresql-{version}`), or remove "
            "the cluster folder to start over (the Dagster run history in it is lost)"
        )
    for directory in candidates:
        if (directory / "psql").is_file() or shutil.which("psql"):
            return directory
    raise PostgresError(
        f"PostgreSQL's server binaries (initdb, pg_ctl) were not found under {DEBIAN_PG_ROOT}/"
        f"<version>/bin or on PATH: {INSTALL_HINT}"
    )


def _bin_version(bin_dir: Path) -> str | None:
    if bin_dir.parent.parent == DEBIAN_PG_ROOT:
        return bin_dir.parent.name
    try:
        out = subprocess.run(
            [str(bin_dir / "pg_ctl"), "--version"], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    match = re.search(r"(\d+)(?:\.\d+)?", out)
    return match.group(1) if match else None


def _tool(bin_dir: Path, name: str) -> str:
    path = bin_dir / name
    if path.is_file():
        return str(path)
    found = shutil.which(name)
    if not found:
        raise PostgresError(
            f"PostgreSQL's `{name}` was not found in {bin_dir} or on PATH: {INSTALL_HINT}"
        )
    return found


def _running_as_root() -> bool:
    return os.geteuid() == 0


def _server_account() -> pwd.struct_passwd | None:
    """The OS account that owns and runs the cluster when we are root (None: ourselves)."""
    if not _running_as_root():
        return None
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        raise PostgresError(
            f"PostgreSQL will not run as root and there is no '{SERVER_USER}' OS user to run it: "
            f"{INSTALL_HINT} (the package creates the user), or run as a normal user"
        ) from None


def _as_server_user(cmd: Sequence[str]) -> list[str]:
    if _server_account() is None:
        return list(cmd)
    runuser = shutil.which("runuser")
    if not runuser:
        raise PostgresError(
            "running as root needs `runuser` (Debian package util-linux) to start PostgreSQL as "
            f"the '{SERVER_USER}' user: install it, or run as a normal user"
        )
    return [runuser, "-u", SERVER_USER, "--", *cmd]


def _run(
    cluster: Cluster,
    cmd: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
    detach: bool = False,
) -> subprocess.CompletedProcess[str]:
    """A PostgreSQL tool run as the cluster's owner, from the cluster folder (the owner may not
    be allowed into the current directory); ``detach`` keeps the server out of our session, so a
    Ctrl-C in the terminal does not stop it."""
    return subprocess.run(
        _as_server_user(cmd),
        cwd=cluster.root,
        env={**os.environ, **(env or {})},
        input=stdin,
        capture_output=True,
        text=True,
        start_new_session=detach,
        check=False,
    )


def _prepare_folders(cluster: Cluster) -> None:
    cluster.socket_dir.mkdir(parents=True, exist_ok=True)
    account = _server_account()
    if account is None:
        return
    for path in (cluster.root, cluster.socket_dir):
        os.chown(path, account.pw_uid, account.pw_gid)
    probe = subprocess.run(
        _as_server_user(["test", "-w", str(cluster.root)]), capture_output=True, check=False
    )
    if probe.returncode != 0:
        raise PostgresError(
            f"the '{SERVER_USER}' OS user, which runs PostgreSQL for root, cannot reach "
            f"{cluster.root}: a parent folder is closed to other users; open it (chmod o+x on "
            "each parent) or set UBAP_DATA_DIR to a folder it can reach"
        )


def _check_socket_path(cluster: Cluster, port: int) -> None:
    socket_path = cluster.socket_dir / f".s.PGSQL.{port}"
    if len(os.fsencode(socket_path)) > MAX_SOCKET_PATH:
        raise PostgresError(
            f"the cluster's Unix socket path {socket_path} is longer than the system allows "
            f"({MAX_SOCKET_PATH} bytes): set UBAP_DATA_DIR to a shorter folder"
        )


def _check_port_free(config: PgConfig) -> None:
    try:
        infos = socket.getaddrinfo(config.host, config.port, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise PostgresError(
            f"{HOST_VAR}={config.host} does not resolve ({err.strerror}): set it to an address of "
            "this machine (default 127.0.0.1)"
        ) from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as PostgreSQL binds
        try:
            probe.bind(address)
        except OSError as err:
            raise PostgresError(
                f"cannot listen on {config.where()} ({err.strerror}): another program holds the "
                f"port (see `ss -ltnp | grep :{config.port}`); stop it or set {PORT_VAR} to a free "
                f"port (the default {DEFAULTS[PORT_VAR]} avoids a system PostgreSQL on 5432)"
            ) from None


def _initdb(cluster: Cluster, bin_dir: Path) -> None:
    done = _run(
        cluster,
        [
            _tool(bin_dir, "initdb"),
            "--pgdata",
            str(cluster.pgdata),
            "--auth-local=peer",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C",
        ],
    )
    if done.returncode != 0:
        raise PostgresError(f"initdb failed for {cluster.pgdata}:\n{done.stderr.strip()}")
    with (cluster.pgdata / "postgresql.conf").open("a") as conf:
        conf.write(
            f"\n# ubap: address, port and socket folder, rewritten on every start\n"
            f"include_if_exists = '{SERVER_CONF}'\n"
        )


def _quote_conf(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _write_server_conf(cluster: Cluster, config: PgConfig) -> None:
    """Address, port and socket folder (rewritten on every start), and the login rules: the
    owner over the socket (peer), everyone else over TCP with a password (scram-sha-256)."""
    settings = {
        "listen_addresses": _quote_conf(config.host),
        "port": str(config.port),
        "unix_socket_directories": _quote_conf(str(cluster.socket_dir)),
        "password_encryption": "'scram-sha-256'",
        # Runs, the daemon and the webserver each hold connections; Dagster's default pools fit.
        "max_connections": "200",
    }
    text = "".join(f"{key} = {value}\n" for key, value in settings.items())
    (cluster.pgdata / SERVER_CONF).write_text(text)
    (cluster.pgdata / "pg_hba.conf").write_text(
        "# ubap: the owner over the Unix socket; everyone else with a password over TCP\n"
        "local all all peer\n"
        "host all all all scram-sha-256\n"
    )
    account = _server_account()
    if account is not None:
        for name in (SERVER_CONF, "pg_hba.conf"):
            os.chown(cluster.pgdata / name, account.pw_uid, account.pw_gid)


def _superuser_name() -> str:
    account = _server_account()
    return account.pw_name if account is not None else pwd.getpwuid(os.geteuid()).pw_name


# Create the role and the database once; set the role's password on every start (psql quotes
# :'name' as a literal and :"name" as an identifier; the password comes from the environment).
ROLE_AND_DATABASE_SQL = r"""
\set ON_ERROR_STOP on
\getenv password UBAP_PG_PASSWORD
SELECT format('CREATE ROLE %I LOGIN', :'role')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role') \gexec
ALTER ROLE :"role" WITH LOGIN PASSWORD :'password';
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'role')
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec
"""


def _ensure_role_and_database(cluster: Cluster, bin_dir: Path, config: PgConfig) -> None:
    done = _run(
        cluster,
        [
            _tool(bin_dir, "psql"),
            "--no-psqlrc",
            "--quiet",
            "--host",
            str(cluster.socket_dir),
            "--port",
            str(config.port),
            "--username",
            _superuser_name(),
            "--dbname",
            "postgres",
            "--set",
            f"role={config.user}",
            "--set",
            f"db={config.db}",
        ],
        env={PASSWORD_VAR: config.require_password()},
        stdin=ROLE_AND_DATABASE_SQL,
    )
    if done.returncode != 0:
        raise PostgresError(
            f"could not create the role {USER_VAR}={config.user} or the database "
            f"{DB_VAR}={config.db}:\n{done.stderr.strip()}"
        )


def _log_tail(cluster: Cluster, lines: int = 15) -> str:
    try:
        return "\n".join(cluster.log_file.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def is_running(cluster: Cluster, bin_dir: Path | None = None) -> bool:
    if not cluster.initialized:
        return False
    bin_dir = bin_dir or find_bin_dir(cluster.version())
    done = _run(cluster, [_tool(bin_dir, "pg_ctl"), "status", "--pgdata", str(cluster.pgdata)])
    return done.returncode == 0


def start(config: PgConfig, cluster: Cluster) -> str:
    """Start the cluster (creating it, the role and the database the first time); idempotent."""
    config.require_password()
    bin_dir = find_bin_dir(cluster.version())
    _prepare_folders(cluster)
    _check_socket_path(cluster, config.port)
    if is_running(cluster, bin_dir):
        port = cluster.running_port()
        if port is not None and port != config.port:
            raise PostgresError(
                f"the cluster in {cluster.root} is already running on port {port}, not "
                f"{PORT_VAR}={config.port}: set {PORT_VAR}={port}, or stop it first "
                "(`make pg-stop`)"
            )
        _ensure_role_and_database(cluster, bin_dir, config)
        return f"PostgreSQL already running at {config.url()} ({cluster.root})"
    _check_port_free(config)
    if not cluster.initialized:
        _initdb(cluster, bin_dir)
    _write_server_conf(cluster, config)
    done = _run(
        cluster,
        [
            _tool(bin_dir, "pg_ctl"),
            "start",
            "--pgdata",
            str(cluster.pgdata),
            "--log",
            str(cluster.log_file),
            "--wait",
            "--timeout",
            str(START_TIMEOUT_S),
        ],
        detach=True,
    )
    if done.returncode != 0:
        raise PostgresError(
            f"PostgreSQL did not start on {config.where()} within {START_TIMEOUT_S} s "
            f"({done.stderr.strip() or done.stdout.strip()}); the server log "
            f"{cluster.log_file} ends with:\n{_log_tail(cluster)}"
        )
    _ensure_role_and_database(cluster, bin_dir, config)
    return f"PostgreSQL started at {config.url()} ({cluster.root})"


def stop(cluster: Cluster) -> str:
    """Stop the cluster (fast shutdown: open sessions are ended, nothing is lost)."""
    if not cluster.initialized:
        return f"no PostgreSQL cluster in {cluster.root}"
    bin_dir = find_bin_dir(cluster.version())
    if not is_running(cluster, bin_dir):
        return f"PostgreSQL in {cluster.root} is not running"
    done = _run(
        cluster,
        [
            _tool(bin_dir, "pg_ctl"),
            "stop",
            "--pgdata",
            str(cluster.pgdata),
            "--mode",
            "fast",
            "--wait",
            "--timeout",
            str(START_TIMEOUT_S),
        ],
    )
    if done.returncode != 0:
        raise PostgresError(
            f"PostgreSQL in {cluster.root} did not stop: {done.stderr.strip()}; the server log "
            f"{cluster.log_file} ends with:\n{_log_tail(cluster)}"
        )
    return f"PostgreSQL in {cluster.root} stopped"


def status(cluster: Cluster) -> tuple[bool, str]:
    if not cluster.initialized:
        return False, f"no PostgreSQL cluster in {cluster.root} (`make pg-start` creates it)"
    if is_running(cluster):
        return True, f"PostgreSQL running in {cluster.root} on port {cluster.running_port()}"
    return False, f"PostgreSQL in {cluster.root} is not running (`make pg-start`)"


def check_instance_database(config: PgConfig | None = None, timeout_s: int = 5) -> None:
    """Log in as the Dagster instance will (``dagster_postgres.yaml``); raise a ``PostgresError``
    that names the setting and the fix when that fails."""
    config = config or PgConfig.from_env()
    password = config.require_password()
    try:
        import psycopg2
    except ImportError:
        raise PostgresError(
            "psycopg2 is not installed: install the scale extra (`make install-scale`, or "
            "pip install -e '.[scale]')"
        ) from None
    try:
        connection = psycopg2.connect(
            host=config.host,
            port=config.port,
            user=config.user,
            password=password,
            dbname=config.db,
            connect_timeout=timeout_s,
        )
    except psycopg2.OperationalError as err:
        raise PostgresError(_explain_connect_error(config, str(err))) from None
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    finally:
        connection.close()


def _explain_connect_error(config: PgConfig, reason: str) -> str:
    lines = [line.strip() for line in reason.strip().splitlines() if line.strip()]
    first_line = lines[0] if lines else "no reason given"
    if "password authentication failed" in reason:
        return (
            f"PostgreSQL at {config.where()} refused {USER_VAR}={config.user}'s password: set "
            f"{PASSWORD_VAR} to the password the role was given (`make pg-start` syncs it to "
            f"{PASSWORD_VAR}), or point {HOST_VAR}/{PORT_VAR} at the right server"
        )
    if "does not exist" in reason:
        return (
            f"PostgreSQL at {config.where()} answers but lacks the role {USER_VAR}={config.user} "
            f"or the database {DB_VAR}={config.db} ({first_line}): `make pg-start` creates both "
            "in the private cluster; on another server create them, or fix the settings"
        )
    return (
        f"the Dagster instance's PostgreSQL at {config.where()} does not answer ({first_line}): "
        f"{START_HINT}, or point {HOST_VAR}/{PORT_VAR} at a running server"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ubap_assets.scale.postgres",
        description="The private PostgreSQL cluster of the Dagster instance (UBAP_PG_* settings).",
    )
    parser.add_argument("command", choices=["start", "stop", "status", "url", "check"])
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="the data directory; the cluster is <data dir>/scale/postgres "
        "(default: UBAP_DATA_DIR, else the repository's data/)",
    )
    args = parser.parse_args(argv)
    try:
        config = PgConfig.from_env()
        cluster = Cluster.under(args.data_dir)
        if args.command == "start":
            print(start(config, cluster))
        elif args.command == "stop":
            print(stop(cluster))
        elif args.command == "status":
            running, text = status(cluster)
            print(text)
            return 0 if running else 3
        elif args.command == "url":
            print(config.url())
        else:
            check_instance_database(config)
            print(f"PostgreSQL answers at {config.url()}")
    except PostgresError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
