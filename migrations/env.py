"""Alembic environment: async, on asyncpg, against DATABASE_URL (or `-x url=…`)."""

import asyncio
from logging.config import fileConfig

from alembic import context

from service.config import get_settings
from service.databases.migrate import engine

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def database_url() -> str:
    return context.get_x_argument(as_dictionary=True).get("url") or get_settings().database_url


def run_migrations(connection) -> None:
    context.configure(connection=connection, target_metadata=None, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations() -> None:
    migrating = engine(database_url())
    async with migrating.connect() as connection:
        await connection.run_sync(run_migrations)
        await connection.commit()
    await migrating.dispose()


if context.is_offline_mode():
    context.configure(dialect_name="postgresql", literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(run_async_migrations())
