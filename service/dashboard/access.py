"""Who may see the dashboard: whoever holds `ADMIN_KEY`.

A browser logs in once with a form and gets an HttpOnly, SameSite=Strict session cookie
(signed, expiring; no server-side session); scripts send `Authorization: Bearer <admin
key>`. Changing the admin key ends every session, since it signs them. Actions (retry,
cancel) also need the `X-Conveyor-Dashboard` header, which a cross-site form cannot send.
"""

from __future__ import annotations

import hmac

from starlette.requests import Request
from starlette.responses import Response

from service.auth import bearer_token
from service.problems import Problem
from service.signing import InvalidToken, Signer, derive_key

COOKIE = "conveyor_admin"
SESSION_SECONDS = 12 * 3600
ACTION_HEADER = "x-conveyor-dashboard"


def admin_key(request: Request) -> str:
    key = request.app.state.settings.admin_key
    if key is None:
        raise Problem(404, "the dashboard is off: set ADMIN_KEY to turn it on", type="dashboard-disabled")
    return key.get_secret_value()


def _signer(request: Request) -> Signer:
    state = request.app.state
    if not hasattr(state, "dashboard_signer"):
        state.dashboard_signer = Signer(derive_key(state.settings, "dashboard-session"))
    return state.dashboard_signer


def key_matches(request: Request, candidate: str) -> bool:
    return hmac.compare_digest(candidate.encode(), admin_key(request).encode())


def is_admin(request: Request) -> bool:
    token = bearer_token(request)
    if token is not None:
        return key_matches(request, token)
    cookie = request.cookies.get(COOKIE)
    if not cookie:
        admin_key(request)  # 404 while the dashboard is off
        return False
    try:
        return _signer(request).verify(cookie) == ["admin"]
    except InvalidToken:
        return False


def require_admin(request: Request) -> None:
    """For the JSON endpoints: 401 rather than a redirect to the login form."""
    if not is_admin(request):
        raise Problem(401, "log in to the dashboard, or send Authorization: Bearer <admin key>", type="unauthorized")


def require_action(request: Request) -> None:
    require_admin(request)
    if bearer_token(request) is None and request.headers.get(ACTION_HEADER) != "1":
        raise Problem(403, f"dashboard actions need the {ACTION_HEADER} header", type="csrf")


def start_session(request: Request, response: Response) -> None:
    token, _ = _signer(request).sign("admin", ttl=SESSION_SECONDS)
    response.set_cookie(COOKIE, token, max_age=SESSION_SECONDS, path="/dashboard", httponly=True,
                        samesite="strict", secure=request.url.scheme == "https")


def end_session(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/dashboard")
