"""What the benchmarks that run the portal as servers share: ports, programs, scratch databases."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

# The server on which each benchmark creates (and drops) a database of its own.
ADMIN_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bin_path(name: str) -> str:
    """A program of this venv (gunicorn, portal), whatever PATH says."""
    return str(Path(sys.executable).parent / name)


def database_url(name: str) -> str:
    """The SQLAlchemy URL of database `name` on the benchmarks' server."""
    base = ADMIN_URL.rsplit("/", 1)[0]
    return base.replace("postgresql://", "postgresql+psycopg://", 1) + "/" + name


def admin(sql: str) -> None:
    """Run one statement on the server outside a transaction (CREATE or DROP DATABASE)."""
    import psycopg

    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql)
