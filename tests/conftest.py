import os
import socket
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import model  # noqa: E402,F401  (offline environment variables before anything else loads)

SHARED_DATA = os.path.join(os.path.dirname(ROOT), "shared", "data")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    # Debian's chromium, never a downloaded browser.
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS, "headless": True}


@pytest.fixture(scope="session")
def pg_server():
    """URL of a throw-away PostgreSQL database (tests/_pg_server.py); skips only where no server can run here."""
    url = os.environ.get("GROUNDCXR_TEST_PG_URL")
    if url:
        yield url
        return
    from _pg_server import ThrowawayServer, why_unavailable
    reason = why_unavailable()
    if reason:
        pytest.skip(reason)
    server = ThrowawayServer()
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def shared_data():
    """../shared/data when present (CI has it, a fresh clone does not): tests that need it skip without it."""
    if not os.path.isdir(SHARED_DATA):
        pytest.skip("../shared/data is not beside this checkout")
    return SHARED_DATA


def free_port() -> int:
    """A local TCP port nobody listens on now (the OS picks it), for an app or a process group a test starts."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
