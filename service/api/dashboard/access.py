"""Who may see the dashboard: whoever holds `ADMIN_KEY`.

A browser logs in once with a form and gets a session (`service.ledger.admin_sessions`): a
random token in an HttpOnly, SameSite=Strict cookie, `Secure` when the dashboard is
served over https (`PUBLIC_URL` says so, or the request came that way). Logging out ends
the session on the server, so a copied cookie dies with it; "log out everywhere" (or
`conveyor dashboard logout-everywhere`) ends them all, and so does changing the admin key.
Scripts send `Authorization: Bearer <admin key>`. Actions (retry, cancel) also need the
`X-Conveyor-Dashboard` header, which a cross-site form cannot send.
"""

from __future__ import annotations

import hmac

from starlette.requests import Request
from starlette.responses import Response

from service.api.auth import bearer_token, holds_admin_key
from service.api.problems import Problem
from service.ledger import admin_sessions

COOKIE = "conveyor_admin"
ACTION_HEADER = "x-conveyor-dashboard"


def admin_key(request: Request) -> str:
    key = request.app.state.settings.admin_key
    if key is None:
        raise Problem(404, "the dashboard is off: set ADMIN_KEY to turn it on", type="dashboard-disabled")
    return key.get_secret_value()


def key_matches(request: Request, candidate: str) -> bool:
    return hmac.compare_digest(candidate.encode(), admin_key(request).encode())


async def is_admin(request: Request) -> bool:
    key = admin_key(request)  # 404 while the dashboard is off
    if bearer_token(request) is not None:
        return holds_admin_key(request)
    cookie = request.cookies.get(COOKIE)
    if not cookie:
        return False
    async with request.app.state.db.write() as conn:  # the primary: a session just opened or ended counts at once
        return await admin_sessions.is_open(conn, cookie, key)


async def require_admin(request: Request) -> None:
    """For the JSON endpoints: 401 rather than a redirect to the login form."""
    if not await is_admin(request):
        raise Problem(401, "log in to the dashboard, or send Authorization: Bearer <admin key>", type="unauthorized")


async def require_action(request: Request) -> None:
    await require_admin(request)
    if bearer_token(request) is None and request.headers.get(ACTION_HEADER) != "1":
        raise Problem(403, f"dashboard actions need the {ACTION_HEADER} header", type="csrf")


def _served_over_https(request: Request) -> bool:
    public_url = request.app.state.settings.public_url
    return request.url.scheme == "https" or bool(public_url and public_url.lower().startswith("https://"))


async def start_session(request: Request, response: Response) -> None:
    async with request.app.state.db.write() as conn:
        token = await admin_sessions.start(conn, admin_key(request))
    response.set_cookie(
        COOKIE,
        token,
        max_age=admin_sessions.SESSION_SECONDS,
        path="/dashboard",
        httponly=True,
        samesite="strict",
        secure=_served_over_https(request),
    )


async def end_session(request: Request, response: Response) -> None:
    """Log out: this browser's session ends on the server too."""
    if cookie := request.cookies.get(COOKIE):
        async with request.app.state.db.write() as conn:
            await admin_sessions.end(conn, cookie)
    response.delete_cookie(COOKIE, path="/dashboard")


async def end_all_sessions(request: Request, response: Response) -> None:
    """Log out everywhere: every dashboard session ends, this one included."""
    async with request.app.state.db.write() as conn:
        await admin_sessions.end_all(conn)
    response.delete_cookie(COOKIE, path="/dashboard")
