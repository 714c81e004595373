"""A PostgreSQL URL in libpq's form, with one host or several (`postgresql://h1:5432,h2:5432/db`).

urllib's `.port` and SQLAlchemy's URL parser take one host only, so nothing parses such a
URL further than its list of hosts: asyncpg connects with the URL as given, the hosts
tried in order (`service.databases.pools.connect_primary`) and the first that is what the
connection needs kept. For the primary
that is a server taking writes (`read-write`, unless the URL's `target_session_attrs` says
otherwise): after a failover new connections land on the promoted standby by themselves,
and while no host takes writes connecting fails like a database that is down (a 503).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

if TYPE_CHECKING:
    from asyncpg.connect_utils import SessionAttribute

DEFAULT_PORT = 5432
HOST = re.compile(r"(?P<name>\[[^\]]*\]|[^:]*)(?::(?P<port>\d*))?")  # `host`, `host:port`, `[::1]:port`


def hosts(url: str) -> list[str]:
    """Each `host:port` the URL names, in order, with PostgreSQL's port where it has none."""
    return [f"{name}:{port}" for name, port in _named(url)]


def addresses(url: str) -> list[tuple[str, int]]:
    """Each host the URL names and its port, as asyncpg takes them (IPv6 without brackets)."""
    return [(name.removeprefix("[").removesuffix("]"), port) for name, port in _named(url)]


def _named(url: str) -> list[tuple[str, int]]:
    netloc = urlsplit(url).netloc.rpartition("@")[2]
    named = []
    for host in netloc.split(","):
        match = HOST.fullmatch(host)
        name, port = (match["name"], match["port"]) if match else (host, None)
        named.append((name or "localhost", int(port or DEFAULT_PORT)))
    return named


def label(url: str) -> str:
    """`host:port/database` (`h1:5432,h2:5432/database` for several hosts): the metrics label."""
    return ",".join(hosts(url)) + urlsplit(url).path


def primary_session(url: str) -> SessionAttribute:
    """The `target_session_attrs` a connection to the primary asks for: the URL's own, else
    `read-write`, so that with several hosts it never lands on a standby. ValueError names
    the choices when the URL's is none of them."""
    from asyncpg.connect_utils import SessionAttribute  # here: settings check URLs without loading asyncpg

    value = parse_qs(urlsplit(url).query).get("target_session_attrs", [SessionAttribute.read_write.value])[-1]
    try:
        return SessionAttribute(value)
    except ValueError:
        choices = ", ".join(attribute.value for attribute in SessionAttribute)
        raise ValueError(f"target_session_attrs must be one of {choices}, not {value!r}") from None
