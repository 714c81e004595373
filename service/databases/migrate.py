"""Run the alembic migrations from code (`conveyor up`, tests), as `alembic upgrade head` does."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from service.databases.pools import connect_primary

ROOT = Path(__file__).resolve().parents[2]


def engine(url: str) -> AsyncEngine:
    """An engine on asyncpg for the migrations, whose connections asyncpg opens from `url`
    as the service does: SQLAlchemy never parses the URL, which it could not with several
    hosts (`postgresql://h1:5432,h2:5432/db`), and they go to the primary."""
    return create_async_engine(
        "postgresql+asyncpg://",
        async_creator=lambda: connect_primary(url),
    )


def alembic_config(url: str) -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.cmd_opts = type("Options", (), {"x": [f"url={url}"]})()
    config.attributes["configure_logger"] = False
    return config


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(url), revision)


async def upgrade_async(url: str, revision: str = "head") -> None:
    """From inside a running event loop: alembic's env runs its own loop, so use a thread."""
    await asyncio.to_thread(upgrade, url, revision)
