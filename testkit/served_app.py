"""Run an ASGI app on a real HTTP server (uvicorn) on a free port, in a background thread."""

from __future__ import annotations

import threading
import time

import uvicorn

from .net import free_port


class ServedApp:
    def __init__(
        self, app, *, host: str = "127.0.0.1", ssl_certfile: str | None = None, ssl_keyfile: str | None = None
    ) -> None:
        self.host = host
        self.port = free_port()
        self.scheme = "https" if ssl_certfile else "http"
        config = uvicorn.Config(
            app,
            host=host,
            port=self.port,
            log_level="warning",
            lifespan="off",
            ssl_certfile=ssl_certfile,
            ssl_keyfile=ssl_keyfile,
            timeout_graceful_shutdown=1,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start on {self.url}")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


class Served:
    """A test server object with a `served` ServedApp: start/stop/url in one place."""

    served: ServedApp

    @property
    def url(self) -> str:
        return self.served.url

    @property
    def port(self) -> int:
        return self.served.port

    def start(self):
        self.served.start()
        return self

    def stop(self) -> None:
        self.served.stop()
