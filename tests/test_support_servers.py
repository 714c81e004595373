import os
import tempfile

import asyncpg
import boto3
import pytest
import redis


def test_private_redis_answers(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    assert client.ping()
    client.set("k", "v")
    assert client.get("k") == b"v"


def test_s3_server_speaks_s3_over_http(s3_server):
    client = boto3.client("s3", endpoint_url=s3_server.endpoint_url)
    client.create_bucket(Bucket="probe")
    client.put_object(Bucket="probe", Key="a.txt", Body=b"hello")
    assert client.get_object(Bucket="probe", Key="a.txt")["Body"].read() == b"hello"


@pytest.mark.skipif("TEST_POSTGRES_URL" in os.environ, reason="pointed at an existing PostgreSQL on purpose")
async def test_the_suite_runs_its_own_postgres_not_the_machines(postgres_server, database_url):
    """A fresh machine has no PostgreSQL: the suite must bring its own, never lean on :5432."""
    conn = await asyncpg.connect(database_url)
    try:
        data_directory = await conn.fetchval("SHOW data_directory")
        port = int(await conn.fetchval("SHOW port"))
    finally:
        await conn.close()
    assert port != 5432
    assert data_directory.startswith(tempfile.gettempdir()), data_directory
    assert postgres_server.startswith(f"postgresql://postgres@127.0.0.1:{port}/")


def test_the_suite_runs_its_own_redis_not_the_machines(redis_server):
    assert redis_server.port != 6379
    assert redis.Redis.from_url(redis_server.url).config_get("dir")["dir"] == redis_server.dir
