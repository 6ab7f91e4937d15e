"""Engines with safe defaults, and the Alembic migrations applied at start-up.

SQLite (the default) gets WAL, a busy timeout and foreign keys on every new connection, and SQLAlchemy emits BEGIN
itself (the sqlite3 driver's legacy mode would not put SELECTs and DDL in the transaction). Writes go through
`write_engine(...)`, whose transactions start with BEGIN IMMEDIATE: a writer takes the lock before it reads, so
two writers queue on the busy timeout instead of one failing with "database is locked" when it upgrades its
read snapshot. Any other SQLAlchemy URL (PostgreSQL for a multi-reviewer site) is used as is.
"""
from __future__ import annotations

import os

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url

from db import default_url

BUSY_TIMEOUT_MS = 30_000
MIGRATIONS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "migrations")


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def make_engine(url: str | None = None) -> Engine:
    url = url or default_url()
    try:
        parsed = make_url(url)
    except Exception as exc:  # sqlalchemy raises ArgumentError with a terse message
        raise ValueError(f"not a database URL: {url!r} (expected e.g. sqlite:///groundcxr.db)") from exc
    if parsed.get_backend_name() != "sqlite":
        return create_engine(parsed, pool_pre_ping=True)
    if not parsed.database or parsed.database == ":memory:" or "mode=memory" in str(parsed):
        # Each pooled connection would get its own empty database: writes in one thread vanish in the next.
        raise ValueError(f"an in-memory SQLite database cannot hold a review store ({url!r}); use a file, "
                         "e.g. sqlite:///groundcxr.db")
    folder = os.path.dirname(os.path.abspath(parsed.database))
    if not os.path.isdir(folder):
        raise ValueError(f"database folder does not exist: {folder}")
    engine = create_engine(parsed, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN (below), not the driver
        cur = dbapi_connection.cursor()
        cur.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = NORMAL")  # durable at checkpoints; WAL keeps it consistent
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("immediate") else "BEGIN")

    return engine


def write_engine(engine: Engine) -> Engine:
    """The same pool, but its transactions take the write lock up front (SQLite) — see the module docstring."""
    return engine.execution_options(immediate=True)


def _alembic_config() -> Config:
    cfg = Config()  # no alembic.ini: everything is set here
    cfg.set_main_option("script_location", MIGRATIONS_DIR)
    return cfg


def head_revision() -> str:
    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def migrate(engine: Engine) -> str:
    """Bring the schema to the newest revision; a no-op when it is there already. Safe when several processes
    start at once: on SQLite the whole upgrade runs in one BEGIN IMMEDIATE transaction (SQLite DDL is
    transactional), on PostgreSQL under a transaction-scoped advisory lock."""
    head = head_revision()
    if current_revision(engine) == head:
        return head
    cfg = _alembic_config()
    with write_engine(engine).begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(7400401)"))  # arbitrary, fixed key for this app
        if MigrationContext.configure(conn).get_current_revision() != head:  # another process may have done it
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    return head
