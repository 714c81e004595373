"""A warm process that forks one child per call: `python -m pipelines.documents.fork_server MODULE:FUNCTION`.

It imports MODULE once, so each child starts in milliseconds with everything loaded. The
parent (`forked.ForkServer`) speaks JSON lines on stdin and stdout, answered in order:

    {"call": [args…]}  →  {"pid": N}       fork a child that runs FUNCTION(*args)
    {"reap": N}        →  {"status": S}    N has ended: its exit code (negative: the signal)

A child stays unreaped until the parent says so, so the parent can watch and signal it
through a pidfd with no risk of the pid being reused meanwhile. Server and children die
with their parent (PR_SET_PDEATHSIG), so a killed worker leaves nothing behind.
"""

from __future__ import annotations

import ctypes
import importlib
import json
import os
import signal
import sys
import traceback
from collections.abc import Callable

PR_SET_PDEATHSIG = 1


def main(argv: list[str]) -> None:
    module, _, name = argv[1].partition(":")
    function = getattr(importlib.import_module(module), name)
    _die_with_parent()
    for line in sys.stdin:
        request = json.loads(line)
        if "call" in request:
            reply = {"pid": _fork(function, request["call"])}
        else:
            _, status = os.waitpid(request["reap"], 0)
            reply = {"status": os.waitstatus_to_exitcode(status)}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


def _fork(function: Callable[..., None], args: list) -> int:
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        _die_with_parent()
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)  # the protocol's pipes are the server's alone
        os.dup2(devnull, 1)
        function(*args)
        code = 0
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(code)


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


if __name__ == "__main__":
    main(sys.argv)
