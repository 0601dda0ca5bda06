"""Who may use the dashboard: the protocol's rules, over HTTP.

- Without a token (a loopback address; the supervisor refuses any other
  without one) a request must name a loopback host: a page of another site
  that rebinds its name to 127.0.0.1 is refused (DNS rebinding).
- With the supervisor's token, every request carries it: as
  ``Authorization: Bearer TOKEN``, or once as ``?token=TOKEN``, which sets
  an HttpOnly, SameSite=Strict cookie and redirects to the address without
  it. Wrong tokens are throttled per address, as the protocol's are.
- A change (a cancel) is a POST, and a browser's must come from the
  dashboard's own pages (its ``Origin`` and ``Sec-Fetch-Site`` say so).
- No other site may frame the pages (a click on "Cancel run" through a
  transparent frame), load anything but the dashboard's own files into
  them, or read the address they came from (it may hold ``?token=``).
"""

from __future__ import annotations

import hmac
import ipaddress
from typing import Protocol
from urllib.parse import urlencode

from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp

from .views import error_response

__all__ = ["AccessMiddleware", "Throttle", "is_loopback_host"]

SAFE_METHODS = frozenset({"GET", "HEAD"})
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class Throttle(Protocol):
    """Wrong tokens per address (the supervisor's ``TokenThrottle``)."""

    def locked_for(self, address: str) -> float: ...

    def failed(self, address: str) -> None: ...

    def succeeded(self, address: str) -> None: ...


def is_loopback_host(host: str) -> bool:
    """``localhost``, ``127.x.y.z`` or ``::1`` (brackets allowed)."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cookie_name(request: Request) -> str:
    """One cookie per port: cookies are shared by every port of a host."""
    return f"coda_token_{request.url.port or 80}"


class AccessMiddleware(BaseHTTPMiddleware):
    def __init__(self, app: ASGIApp, *, token: str | None, throttle: Throttle | None) -> None:
        super().__init__(app)
        self.token = token
        self.throttle = throttle

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        response = self._refusal(request)
        if response is None:
            if self.token and "token" in request.query_params and request.method in SAFE_METHODS:
                response = self._remember(request)
            else:
                response = await call_next(request)
        response.headers.update(HEADERS)
        return response

    def _refusal(self, request: Request) -> Response | None:
        if not self.token:
            host = request.url.hostname or ""
            if not is_loopback_host(host):
                return error_response(
                    request,
                    403,
                    "wrong_host",
                    f"this dashboard answers only to a loopback host name, not {host!r}: "
                    "open it at http://127.0.0.1:PORT/ (or give the supervisor a --token)",
                )
        elif (refused := self._token_refusal(request)) is not None:
            return refused
        if request.method not in SAFE_METHODS and not _same_origin(request):
            return error_response(
                request, 403, "cross_origin", "changes are accepted only from the dashboard's pages"
            )
        return None

    def _token_refusal(self, request: Request) -> Response | None:
        assert self.token is not None
        offered = _offered_token(request)
        if not offered:
            return error_response(
                request,
                401,
                "token_required",
                "this dashboard needs the supervisor's token: open it once as "
                f"{request.url.replace(query='token=TOKEN')} "
                "(or send Authorization: Bearer TOKEN)",
            )
        address = request.client.host if request.client else ""
        if self.throttle is not None and (locked := self.throttle.locked_for(address)) > 0:
            return error_response(
                request,
                429,
                "token_throttled",
                f"too many wrong tokens from {address}: tokens are refused unchecked "
                f"for {locked:.1f}s more",
            )
        if not hmac.compare_digest(offered.encode(), self.token.encode()):
            if self.throttle is not None:
                self.throttle.failed(address)
            return error_response(
                request, 401, "token_invalid", "the token offered is not this supervisor's --token"
            )
        if self.throttle is not None:
            self.throttle.succeeded(address)
        return None

    def _remember(self, request: Request) -> Response:
        """``?token=``: set the cookie, and go where asked without the token."""
        assert self.token is not None
        rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
        response = RedirectResponse(str(request.url.replace(query=urlencode(rest))), 303)
        response.set_cookie(
            cookie_name(request), self.token, httponly=True, samesite="strict", path="/"
        )
        return response


def _offered_token(request: Request) -> str:
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials:
        return credentials.strip()
    return request.query_params.get("token") or request.cookies.get(cookie_name(request), "")


def _same_origin(request: Request) -> bool:
    """A browser names where a request comes from; other clients do not
    (and cannot be made to send one on a visitor's behalf)."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True
    own = f"{request.url.scheme}://{request.headers.get('host', '')}"
    return origin.lower() == own.lower()
