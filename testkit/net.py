"""Free ports, waiting for a TCP listener, and stopping the server process behind one."""

import socket
import subprocess
import time


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s") from None
            time.sleep(0.05)


def stop_server(process: subprocess.Popen | None) -> None:
    """SIGTERM a server process started by a test, if it still runs, and reap it."""
    if process and process.poll() is None:
        process.terminate()
        process.wait(10)
