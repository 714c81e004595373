"""A client that sends one request head of any size over a raw socket, as an attacker
would, and the CPU time the server process spent meanwhile."""

from __future__ import annotations

import socket
import time

import psutil

CHUNK = b"a" * 65536


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def send_huge_header(port: int, size: int, timeout: float = 60.0) -> bytes:
    """Send `GET /livez` with one header of `size` bytes; what the server answered (b""
    if it closed or reset the connection first)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(b"GET /livez HTTP/1.1\r\nHost: localhost\r\nX-Padding: ")
            deadline = time.monotonic() + timeout
            for _ in range(size // len(CHUNK)):
                sock.sendall(CHUNK)
                assert time.monotonic() < deadline, "the server is still reading the header"
            sock.sendall(b"\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            return sock.recv(4096)
        except ConnectionResetError:
            return b""
