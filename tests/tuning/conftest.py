"""A real PostgreSQL server for the tests of many workers: a throwaway cluster on 127.0.0.1, created and removed
here. Outside CI the tests that need it skip, saying why, when it cannot be started; with
SWAPOUT_REQUIRE_POSTGRES=1 (set by .ci/run, which installs the server from Debian's packages) they fail."""

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

pytest.importorskip("optuna", reason="swapout tune needs Optuna: pip install -e '.[test]'")



class PostgresServer:
    """initdb, pg_ctl start and stop, a database per test; as the postgres user when run as root."""

    def __init__(self):
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb")) or [shutil.which("initdb")]
        if not found or not found[-1]:
            raise RuntimeError("no PostgreSQL server here (initdb not found; Debian: apt-get install postgresql)")
        self.bin = Path(found[-1]).parent
        self.root = Path(tempfile.mkdtemp(prefix="swapout-pg-"))
        self.data = self.root / "data"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.as_user = []
        if os.geteuid() == 0:  # initdb refuses root
            shutil.chown(self.root, "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        self.start()

    def _run(self, tool, *args):
        out = subprocess.run([*self.as_user, str(self.bin / tool), *args], capture_output=True, text=True, timeout=120)
        if out.returncode:
            raise RuntimeError(f"{tool} failed: {(out.stderr or out.stdout).strip()[-500:]}")

    def start(self):
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-w", "-o",
                  f"-k {self.root} -p {self.port} -h 127.0.0.1 -F", "start")

    def stop(self, mode="fast"):
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def database(self, owner: str = "postgres") -> str:
        """A new, empty database of ``owner``; its URL, without a password."""
        import psycopg

        name = f"t{uuid.uuid4().hex[:12]}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True) as c:
            c.execute(f"CREATE DATABASE {name} OWNER {owner}")
        return f"postgresql://{owner}@127.0.0.1:{self.port}/{name}"

    def password_role(self, password: str) -> str:
        """A new role that must log in with ``password`` (every other role is trusted); its name."""
        import psycopg

        name = f"r{uuid.uuid4().hex[:12]}"
        hba = self.data / "pg_hba.conf"
        hba.write_text(f"host all {name} 127.0.0.1/32 scram-sha-256\n" + hba.read_text())  # the first match counts
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True) as c:
            c.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{password}'")
        self._run("pg_ctl", "-D", str(self.data), "reload")
        return name

    def remove(self):
        try:
            self.stop("immediate")
        except RuntimeError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres():
    try:
        import psycopg  # noqa: F401

        server = PostgresServer()
    except (ImportError, RuntimeError, OSError, KeyError, subprocess.TimeoutExpired) as err:
        if os.environ.get("SWAPOUT_REQUIRE_POSTGRES"):
            pytest.fail(f"PostgreSQL is required here (SWAPOUT_REQUIRE_POSTGRES) but could not be started: {err}")
        pytest.skip(f"no PostgreSQL server could be started here: {err}")
    yield server
    server.remove()
