"""How Conveyor introduces itself on the HTTP requests it makes: webhooks, callbacks,
notification providers and LLM servers see `Conveyor/<version>`, not `python-httpx`."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def _version() -> str:
    try:
        return version("conveyor")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "0+unknown"


USER_AGENT = f"Conveyor/{_version()}"
HEADERS = {"User-Agent": USER_AGENT}
