import boto3
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
