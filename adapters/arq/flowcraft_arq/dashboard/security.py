"""Who may look and who may act: token or custom auth, same-origin POSTs, read-only mode.

One ASGI middleware in front of every route (also when the app is mounted inside another):
- `auth` is None (no check), a token string, or a callable `(request) -> bool` (sync or async).
  A token is accepted as `Authorization: Bearer <token>`, as the `flowcraft_dashboard` cookie,
  or once as `?token=<token>`, which sets that cookie (HttpOnly, SameSite=Strict) and redirects
  to the same URL without it, so the token does not stay in the address bar or in logs.
- A POST must come from the dashboard's own origin (`Origin`, else `Referer`); a cross-site
  form can therefore not cancel runs with the operator's cookie.
- In read-only mode every POST is refused (403) before it reaches a handler.
- Every response carries a strict Content-Security-Policy: scripts and styles only from the
  dashboard's own static files, so even a value that slipped through escaping could not run.
"""

from __future__ import annotations

import hmac
import inspect
from collections.abc import Awaitable, Callable
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

Auth = str | Callable[[Request], bool | Awaitable[bool]] | None

COOKIE = "flowcraft_dashboard"
HEADERS = [
    (b"content-security-policy",
     b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
     b"connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def same_origin(request: Request) -> bool:
    """True when the request names this server as its origin."""
    if request.headers.get("sec-fetch-site", "") == "cross-site":
        return False
    own = f"{request.url.scheme}://{request.headers.get('host', '')}"
    origin = request.headers.get("origin")
    if origin is not None:
        return origin == own
    referer = request.headers.get("referer")
    return referer is not None and (referer == own or referer.startswith(own + "/"))


class Guard:
    """The middleware; `app` is the dashboard's router."""

    def __init__(self, app: ASGIApp, *, auth: Auth, read_only: bool) -> None:
        self.app = app
        self.auth = auth
        self.read_only = read_only

    async def _allowed(self, request: Request) -> bool:
        if self.auth is None:
            return True
        if isinstance(self.auth, str):
            header = request.headers.get("authorization", "")
            if header.startswith("Bearer ") and _same(header[7:], self.auth):
                return True
            return _same(request.cookies.get(COOKIE, ""), self.auth)
        verdict = self.auth(request)
        if inspect.isawaitable(verdict):
            verdict = await verdict
        return bool(verdict)

    async def _refuse(self, request: Request) -> Response | None:
        if (isinstance(self.auth, str) and request.method == "GET"
                and "token" in request.query_params):
            if not _same(request.query_params["token"], self.auth):
                return PlainTextResponse("401 unauthorized: wrong token", 401)
            rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            target = request.url.path + (f"?{urlencode(rest)}" if rest else "")
            redirect = RedirectResponse(target, 303)
            root = request.scope.get("root_path", "") or "/"
            redirect.set_cookie(COOKIE, self.auth, httponly=True, samesite="strict", path=root,
                                secure=request.url.scheme == "https")
            return redirect
        if not await self._allowed(request):
            return PlainTextResponse(
                "401 unauthorized: open the dashboard once with ?token=<token>, or send "
                "Authorization: Bearer <token>", 401, headers={"www-authenticate": "Bearer"})
        if request.method not in ("GET", "HEAD"):
            if self.read_only:
                return PlainTextResponse("403 forbidden: this dashboard is read-only", 403)
            if not same_origin(request):
                return PlainTextResponse("403 forbidden: cross-origin request refused", 403)
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + HEADERS
            await send(message)

        refusal = await self._refuse(Request(scope, receive))
        if refusal is not None:
            await refusal(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)


__all__ = ["COOKIE", "Auth", "Guard", "same_origin"]
