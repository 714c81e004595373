"""The suite's PostgreSQL, and fresh databases on it, one per test session.

The suite brings its own server: `private_server()` runs `initdb` in a temporary
directory and starts it on a free port, so the tests never depend on a PostgreSQL the
machine happens to run. `TEST_POSTGRES_URL` (an admin URL, e.g.
`postgresql://postgres@127.0.0.1:5432/postgres`) points them at an existing one instead.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg

from .net import free_port
from .pg_cluster import PgCluster

_admin_url: str | None = os.environ.get("TEST_POSTGRES_URL")


def admin_url() -> str:
    """The URL of the server's `postgres` database, where databases are created."""
    if _admin_url is None:
        raise RuntimeError("no PostgreSQL for the tests: enter private_server() or set TEST_POSTGRES_URL")
    return _admin_url


@contextmanager
def private_server() -> Iterator[str]:
    """The suite's own PostgreSQL for the duration of the block (unless TEST_POSTGRES_URL is set)."""
    global _admin_url
    if _admin_url is not None:
        yield _admin_url
        return
    cluster = PgCluster(free_port()).init()
    cluster.start()
    _admin_url = cluster.url()
    try:
        yield _admin_url
    finally:
        _admin_url = None
        cluster.destroy()


@contextmanager
def serving(url: str) -> Iterator[str]:
    """Databases made on the server at admin `url` for the duration of the block (a server a
    test or benchmark started for itself), then on the previous one again."""
    global _admin_url
    previous, _admin_url = _admin_url, url
    try:
        yield url
    finally:
        _admin_url = previous


def database_url(name: str) -> str:
    base, _, _ = admin_url().rpartition("/")
    return f"{base}/{name}"


async def create_database(prefix: str = "conveyor_test") -> str:
    name = f"{prefix}_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(admin_url())
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return name


async def drop_database(name: str) -> None:
    conn = await asyncpg.connect(admin_url())
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
