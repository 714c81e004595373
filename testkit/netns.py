"""A network namespace joined to this host by a veth pair on a private /30, for cutting a
worker off (bring the link down) and joining it again. Only addresses it creates."""

from __future__ import annotations

import fcntl
import itertools
import os
import random
import re
import subprocess
import time
from pathlib import Path

#: Held while a subnet is chosen and taken: two test processes never pick the same one.
LOCK_PATH = Path("/tmp/conveyor-netns.lock")
_serial = itertools.count()


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def _free_subnet() -> int:
    """A 10.200.N.0/30 no link on this machine uses yet (other namespaces, other tests)."""
    used = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True, timeout=10).stdout
    taken = {int(n) for n in re.findall(r"10\.200\.(\d+)\.", used)}
    return random.choice([n for n in range(1, 250) if n not in taken])


class NetNamespace:
    def __init__(self) -> None:
        tag = f"{os.getpid():x}{next(_serial):x}"  # unique on this host; a link name holds 15 bytes
        self.name = f"cvy{tag}"
        self.host_link, self.peer_link = f"cvh{tag}", f"cvp{tag}"
        self.host_address = self.peer_address = self.cidr = ""

    def create(self) -> NetNamespace:
        """Make the namespace and its link on a subnet no other link uses."""
        with LOCK_PATH.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            subnet = _free_subnet()
            self.host_address, self.peer_address = f"10.200.{subnet}.1", f"10.200.{subnet}.2"
            self.cidr = f"10.200.{subnet}.0/30"
            self._create()
        return self

    def _create(self) -> None:
        ip("netns", "add", self.name)
        try:
            ip("link", "add", self.host_link, "type", "veth", "peer", "name", self.peer_link)
            ip("link", "set", self.peer_link, "netns", self.name)
            ip("addr", "add", f"{self.host_address}/30", "dev", self.host_link)
            ip("link", "set", self.host_link, "up")
            for command in (
                ("addr", "add", f"{self.peer_address}/30", "dev", self.peer_link),
                ("link", "set", self.peer_link, "up"),
                ("link", "set", "lo", "up"),
                ("route", "add", "default", "via", self.host_address),  # this host's other addresses too
            ):
                ip("netns", "exec", self.name, "ip", *command)
        except BaseException:
            self.delete()
            raise

    def cut(self) -> None:
        ip("link", "set", self.host_link, "down")

    def join(self, timeout: float = 10.0) -> None:
        """Bring the link back, and return once the namespace's side carries traffic again
        (a veth reports LOWER_UP a moment after `up`; connecting earlier is refused). The
        neighbour caches are flushed: lookups that failed during the cut would otherwise
        answer "no route to host" for a while after the link is back."""
        ip("link", "set", self.host_link, "up")
        ip("neigh", "flush", "dev", self.host_link)
        ip("netns", "exec", self.name, "ip", "neigh", "flush", "dev", self.peer_link)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            peer = subprocess.run(
                ["ip", "netns", "exec", self.name, "ip", "-o", "link", "show", self.peer_link],
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout
            host = subprocess.run(
                ["ip", "-o", "link", "show", self.host_link], capture_output=True, text=True, timeout=10
            ).stdout
            if "LOWER_UP" in peer and "LOWER_UP" in host:
                return
            time.sleep(0.05)
        raise TimeoutError(f"{self.host_link} did not come back up within {timeout:g}s")

    def delete(self) -> None:
        subprocess.run(["ip", "link", "del", self.host_link], capture_output=True, timeout=10)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=10)


def netns_permitted() -> str | None:
    """None if network namespaces can be made here, else why not."""
    probe = f"cvyprobe{os.getpid() % 100000}"
    result = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, timeout=10)
    if result.returncode != 0:
        return f"ip netns is not permitted here: {result.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=10)
    return None
