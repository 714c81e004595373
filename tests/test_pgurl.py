"""DATABASE_URL in libpq's multi-host form: labels, masking, the primary's session
attribute and the migrations' engine, none of which may trip on several hosts."""

from __future__ import annotations

import pytest
from asyncpg.connect_utils import SessionAttribute

from service.config import ConfigurationError, load_settings
from service.databases import pgurl
from service.databases.migrate import engine
from service.databases.replicas import DatabaseAddress

TWO_HOSTS = "postgresql://conveyor:s3cret@db-a:5432,db-b:6432/conveyor?target_session_attrs=read-write"


def test_every_host_is_named_with_its_port():
    assert pgurl.hosts(TWO_HOSTS) == ["db-a:5432", "db-b:6432"]
    assert pgurl.hosts("postgresql://db-a,[::1]:6000,[fe80::1]/x") == ["db-a:5432", "[::1]:6000", "[fe80::1]:5432"]
    assert pgurl.hosts("postgresql:///conveyor") == ["localhost:5432"]
    assert pgurl.addresses("postgresql://u@db-a,[::1]:6000/x") == [("db-a", 5432), ("::1", 6000)]


def test_the_address_of_several_hosts_has_a_label_and_a_masked_name():
    address = DatabaseAddress(TWO_HOSTS)
    assert address.label == "db-a:5432,db-b:6432/conveyor"
    assert address.name == TWO_HOSTS.replace("s3cret", "***")
    assert DatabaseAddress("postgresql://postgres@127.0.0.1/conveyor").label == "127.0.0.1:5432/conveyor"


def test_the_primary_is_the_host_that_takes_writes_unless_the_url_says_otherwise():
    assert pgurl.primary_session("postgresql://db-a,db-b/conveyor") is SessionAttribute.read_write
    assert pgurl.primary_session(TWO_HOSTS.replace("read-write", "primary")) is SessionAttribute.primary
    with pytest.raises(ValueError, match="target_session_attrs must be one of"):
        pgurl.primary_session(TWO_HOSTS.replace("read-write", "writable"))


def test_a_bad_target_session_attrs_stops_the_settings_not_each_request():
    with pytest.raises(ConfigurationError, match="target_session_attrs"):
        load_settings(database_url=TWO_HOSTS.replace("read-write", "writable"))
    assert load_settings(database_url=TWO_HOSTS).database_url == TWO_HOSTS


async def test_the_migrations_engine_leaves_the_url_to_asyncpg():
    """SQLAlchemy's URL parser raises on `h1:5432,h2:5432`; the engine never gives it the URL."""
    migrating = engine(TWO_HOSTS)
    try:
        assert migrating.dialect.driver == "asyncpg"
    finally:
        await migrating.dispose()
