"""A real S3-compatible server over HTTP: moto's standalone server in its own process.

It runs as a subprocess so outage tests can stop and start it like a real dependency.
"""

from __future__ import annotations

import os
import subprocess
import sys

from .net import free_port, stop_server, wait_for_port

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class S3Server:
    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {**os.environ, **CREDENTIALS}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        wait_for_port(self.port)

    def stop(self) -> None:
        """Stop the server; moto keeps its state in memory, so buckets are gone afterwards."""
        stop_server(self.process)
        self.process = None
