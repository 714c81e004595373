"""A real S3-compatible server over HTTP: moto's standalone server in its own process.

It runs as a subprocess so outage tests can stop and start it like a real dependency.
"""

from __future__ import annotations

import os
import subprocess
import sys

import boto3

from .net import free_port, stop_server, wait_for_port

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class S3Server:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host  # 0.0.0.0 serves other hosts (network namespaces) too
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {**os.environ, **CREDENTIALS}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", self.host, "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        wait_for_port(self.port)

    def client(self):
        """A boto3 S3 client on this server, with the test credentials."""
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
        )

    def create_bucket(self, bucket: str) -> None:
        self.client().create_bucket(Bucket=bucket)

    def stop(self) -> None:
        """Stop the server; moto keeps its state in memory, so buckets are gone afterwards."""
        stop_server(self.process)
        self.process = None
