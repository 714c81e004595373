"""What the embedded servers behind `conveyor up` need from the system before they start."""

from __future__ import annotations

import os
import pwd
import secrets
import subprocess

import pytest

from service.cli.embedded import ensure_system_user

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="creating a system user needs root")


@root_only
def test_the_system_user_is_created_even_when_path_lacks_the_system_directories(monkeypatch):
    name = f"conveyor-test-{secrets.token_hex(3)}"
    monkeypatch.setenv("PATH", "/nonexistent")  # as a minimal service environment's root PATH
    try:
        ensure_system_user(name)
        assert pwd.getpwnam(name).pw_shell == "/bin/bash"
        ensure_system_user(name)  # there already: nothing to do
    finally:
        subprocess.run(["/usr/sbin/userdel", name], check=False, capture_output=True)
    with pytest.raises(KeyError):
        pwd.getpwnam(name)
