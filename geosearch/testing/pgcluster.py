"""Start and stop a throwaway PostgreSQL 15 + PostGIS cluster in a folder.

Used by the test suite, the fault and benchmark scripts, and ``make run-postgis`` /
``make run-cluster``. initdb and pg_ctl refuse to run as root, so as root they run as the
``postgres`` user, on a folder that user owns. The server listens on 127.0.0.1 only, with
its socket in the folder itself.

    python -m geosearch.testing.pgcluster start DIR PORT   # prints the database URL
    python -m geosearch.testing.pgcluster stop DIR
    python -m geosearch.testing.pgcluster cluster-start DIR PRIMARY_PORT REPLICA_PORT...
    python -m geosearch.testing.pgcluster cluster-stop DIR
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

PG_BIN = Path(os.environ.get("GEOSEARCH_PG_BIN", "/usr/lib/postgresql/15/bin"))
DATABASE = "geosearch"


def _as_owner(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _own(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, "postgres", "postgres")


def url(port: int, database: str = DATABASE) -> str:
    """The SQLAlchemy URL of a database on the cluster."""
    return f"postgresql+psycopg://postgres@127.0.0.1:{port}/{database}"


def running(datadir: Path) -> bool:
    """Whether a server runs on this folder."""
    if not (datadir / "PG_VERSION").exists():
        return False
    status = subprocess.run(_as_owner([str(PG_BIN / "pg_ctl"), "-D", str(datadir), "status"]),
                            capture_output=True, check=False)
    return status.returncode == 0


def start(datadir: str | Path, port: int) -> str:
    """Create the cluster if needed, start it, create the database; return its URL."""
    datadir = Path(datadir).resolve()
    _init(datadir)
    _start_server(datadir, port)
    create_database(port, DATABASE)
    return url(port)


def _init(datadir: Path) -> None:
    if not (datadir / "PG_VERSION").exists():
        datadir.mkdir(parents=True, exist_ok=True)
        datadir.chmod(0o700)
        _own(datadir)
        subprocess.run(_as_owner([str(PG_BIN / "initdb"), "-D", str(datadir), "-U", "postgres",
                                  "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"]),
                       check=True, capture_output=True)


def _start_server(datadir: Path, port: int) -> None:
    if not running(datadir):
        options = (f"-p {port} -k {datadir} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c full_page_writes=off -c synchronous_commit=off")
        subprocess.run(_as_owner([str(PG_BIN / "pg_ctl"), "-D", str(datadir), "-o", options,
                                  "-l", str(datadir / "server.log"), "-w", "-t", "60",
                                  "start"]), check=True, capture_output=True)


def create_database(port: int, name: str) -> str:
    """Create a database (if missing) with PostGIS enabled; return its URL."""
    import psycopg

    deadline = time.monotonic() + 30
    while True:
        try:
            admin = psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname=postgres",
                                    autocommit=True)
            break
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    with admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            admin.execute(f'CREATE DATABASE "{name}"')
    with psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname={name}",
                         autocommit=True) as db:
        db.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    return url(port, name)


def stop(datadir: str | Path, mode: str = "fast") -> None:
    """Stop the server on this folder, if one runs: a ``fast`` shutdown, or ``immediate``
    (its processes quit at once, as in a crash: the next start recovers from the WAL)."""
    datadir = Path(datadir).resolve()
    if running(datadir):
        subprocess.run(_as_owner([str(PG_BIN / "pg_ctl"), "-D", str(datadir), "-m", mode,
                                  "-w", "stop"]), check=True, capture_output=True)


def start_pgbouncer(workdir: str | Path, pg_port: int, port: int) -> None:
    """Start Debian's pgbouncer in transaction pooling mode on 127.0.0.1:``port``, in
    front of the cluster on ``pg_port`` (every database, user postgres, trust), with its
    files in ``workdir``. As root it runs as the ``postgres`` user, as it insists."""
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "userlist.txt").write_text('"postgres" ""\n')
    (workdir / "pgbouncer.ini").write_text(f"""[databases]
* = host=127.0.0.1 port={pg_port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {workdir}/userlist.txt
pool_mode = transaction
max_client_conn = 500
default_pool_size = 20
logfile = {workdir}/pgbouncer.log
pidfile = {workdir}/pgbouncer.pid
""")
    for path in workdir.iterdir():
        _own(path)
    _own(workdir)
    subprocess.run(_as_owner(["pgbouncer", "-d", str(workdir / "pgbouncer.ini")]), check=True,
                   capture_output=True)
    import psycopg

    deadline = time.monotonic() + 15
    while True:
        try:
            psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname=postgres",
                            connect_timeout=2).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def stop_pgbouncer(workdir: str | Path) -> None:
    """Stop the pgbouncer started in ``workdir``, if it runs."""
    pidfile = Path(workdir) / "pgbouncer.pid"
    if pidfile.exists():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pidfile.read_text().strip()), 15)


def start_replica(datadir: str | Path, port: int, primary_port: int, slot: str) -> str:
    """A hot standby of the cluster on ``primary_port``, streaming through a replication
    slot (``pg_basebackup -R -X stream -C -S slot``), started on ``port``; its URL."""
    datadir = Path(datadir).resolve()
    if not (datadir / "PG_VERSION").exists():
        datadir.mkdir(parents=True, exist_ok=True)
        datadir.chmod(0o700)
        _own(datadir)
        subprocess.run(_as_owner([str(PG_BIN / "pg_basebackup"), "-D", str(datadir), "-R",
                                  "-X", "stream", "-c", "fast", "-C", "-S", slot,
                                  "-h", "127.0.0.1", "-p",
                                  str(primary_port), "-U", "postgres"]),
                       check=True, capture_output=True)
    _start_server(datadir, port)
    return url(port)


def start_cluster(base: str | Path, ports: list[int]) -> list[str]:
    """A primary (``base/primary`` on ``ports[0]``) and a hot standby for each further
    port (``base/replicaN``); returns their URLs, the primary's first."""
    base = Path(base).resolve()
    urls = [start(base / "primary", ports[0])]
    for n, port in enumerate(ports[1:], start=1):
        urls.append(start_replica(base / f"replica{n}", port, ports[0], f"replica{n}"))
    return urls


def stop_cluster(base: str | Path) -> None:
    """Stop the replicas, then the primary (whatever of them runs)."""
    base = Path(base).resolve()
    for datadir in [*sorted(base.glob("replica*")), base / "primary"]:
        stop(datadir)


def main(argv: list[str]) -> int:
    if len(argv) >= 3 and argv[0] == "start":
        print(start(argv[1], int(argv[2])))
        return 0
    if len(argv) >= 2 and argv[0] == "stop":
        stop(argv[1])
        return 0
    if len(argv) >= 4 and argv[0] == "cluster-start":
        print("\n".join(start_cluster(argv[1], [int(p) for p in argv[2:]])))
        return 0
    if len(argv) >= 2 and argv[0] == "cluster-stop":
        stop_cluster(argv[1])
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
