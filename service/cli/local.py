"""What `conveyor up` keeps in its data directory so a local install works as it stands.

Two secrets, each made once and kept (mode 0600), so a restart shows the same ones: the
API key of the tenant "default" and the dashboard's admin key. And settings that make
every channel usable with nothing configured: emails go to a mail sink in the data
directory (`conveyor mail` lists them) and callbacks may reach loopback addresses, both
only where the environment did not say otherwise. Loopback only while the API itself
listens on loopback alone: served to a network (`--host 0.0.0.0`), anyone with a key could
otherwise make the worker call services bound to this machine's loopback.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from pathlib import Path

from pydantic import SecretStr

from service.cli import targets
from service.cli.keys import create_key
from service.cli.mail import sink_url
from service.config import Settings
from service.ledger import tenants

DEFAULT_TENANT = "default"
API_KEY_FILE = "api-key"
ADMIN_KEY_FILE = "admin-key"
LOOPBACK = ["127.0.0.0/8", "::1", "localhost"]


def _read_secret(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None


def _write_secret(path: Path, value: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(value + "\n")


def admin_key(data_dir: Path) -> str:
    """The dashboard's admin key for this data directory, made on first use."""
    path = data_dir / ADMIN_KEY_FILE
    if (key := _read_secret(path)) is None:
        key = secrets.token_urlsafe(32)
        _write_secret(path, key)
    return key


async def api_key(database_url: str, data_dir: Path, *, new: bool = False) -> str:
    """The default tenant's key kept in `data_dir`, or a new one (kept from now on) when
    asked, when there is none, or when the database no longer honours it (revoked, or
    another database)."""
    path = data_dir / API_KEY_FILE
    kept = None if new else _read_secret(path)
    async with targets.transaction(database_url) as conn:
        if kept is not None:
            owner = await tenants.key_owner(conn, tenants.hash_key(kept))
            if owner is not None and owner[0].name == DEFAULT_TENANT:
                return kept
        key = await create_key(conn, DEFAULT_TENANT)
    _write_secret(path, key)
    return key


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


def local_settings(settings: Settings, data_dir: Path, *, host: str) -> Settings:
    """`settings` with the local conveniences wherever the environment named nothing;
    `host` is the address the API listens on."""
    given = settings.model_fields_set
    overrides: dict[str, object] = {}
    if "admin_key" not in given:
        overrides["admin_key"] = SecretStr(admin_key(data_dir))
    if "smtp_url" not in given:
        overrides["smtp_url"] = sink_url(data_dir)
    if "callback_allowed_hosts" not in given and _is_loopback(host):
        overrides["callback_allowed_hosts"] = LOOPBACK
    return settings.model_copy(update=overrides)
