"""A throw-away PostgreSQL server for the store tests: Debian's `postgresql` binaries, a fresh cluster in a temp
folder, listening only on a unix socket there, stopped and deleted when the session ends.

Run as root (CI), the cluster belongs to the `postgres` user, because PostgreSQL refuses to run as root.
`GROUNDCXR_TEST_PG_URL` (a database with 'test' in its name) is used instead when set.
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile

INSTALL_HINT = "scripts/setup.sh --browser installs Debian's postgresql"
DB_NAME = "groundcxr_test"


def server_binaries() -> str | None:
    """The newest installed PostgreSQL's bin folder, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    return os.path.dirname(found[-1]) if found else None


def why_unavailable() -> str | None:
    if server_binaries() is None:
        return f"PostgreSQL server binaries not installed ({INSTALL_HINT})"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root but there is no 'postgres' user to run the server as"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "the psycopg driver is not installed (pip install -r requirements.txt)"
    return None


class ThrowawayServer:
    def __init__(self):
        self.bin = server_binaries()
        self.root = tempfile.mkdtemp(prefix="gcxr-pg-")  # short: a socket path must fit in 107 bytes
        self.data = os.path.join(self.root, "data")
        self.user = None
        if os.geteuid() == 0:
            self.user = pwd.getpwnam("postgres")
            os.chown(self.root, self.user.pw_uid, self.user.pw_gid)
        os.chmod(self.root, 0o700)

    def _run(self, *argv: str) -> None:
        cmd = [os.path.join(self.bin, argv[0]), *argv[1:]]
        if self.user is not None:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[:2])} failed ({out.returncode}): {out.stderr.strip()[-800:]}")

    def start(self) -> str:
        self._run("initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync", "-N")
        # No TCP at all; fsync off: the cluster is thrown away, durability is not what these tests measure.
        opts = f"-k {self.root} -c listen_addresses='' -c fsync=off -c max_connections=60"
        self._run("pg_ctl", "-D", self.data, "-o", opts, "-l", os.path.join(self.root, "log"), "-w", "start")
        self._run("createdb", "-h", self.root, "-U", "postgres", DB_NAME)
        return f"postgresql+psycopg://postgres@/{DB_NAME}?host={self.root}"

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
