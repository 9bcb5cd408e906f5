"""Who may write through ``runq ui``, and how a browser is kept from being tricked into it.

- Bound to loopback without a token, only requests naming a loopback ``Host`` are served
  (a DNS-rebinding page cannot reach it) and a browser's writes carry the page's CSRF
  token; a script on the machine (no ``Origin``) may write as the CLI may.
- With a token (``RUNQ_UI_TOKEN`` or ``--token-file``), every write needs it: the
  ``Authorization: Bearer`` header, or the session cookie the login form sets plus the
  CSRF token of that session in ``X-CSRF-Token``. The cookie is HttpOnly and
  SameSite=Strict, its signature and the CSRF tokens are HMACs keyed by the token, so
  changing the token ends every session.
- Every write from a browser must come from this origin (``Origin``/``Sec-Fetch-Site``),
  or from ``--public-url``'s (behind a TLS proxy, whose Host is then served too).
- ``--read-only`` refuses every write whatever the credentials.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

from starlette.requests import Request

SESSION_COOKIE = "runq_session"
CSRF_HEADER = "x-csrf-token"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def same(given: str, expected: str) -> bool:
    """Constant-time comparison of text from a request: as bytes, because
    ``hmac.compare_digest`` raises TypeError on non-ASCII ``str`` (a header or cookie
    holding ``é`` must be refused, not answered with a 500)."""
    return hmac.compare_digest(
        given.encode("utf-8", "surrogateescape"), expected.encode("utf-8", "surrogateescape"),
    )


class Refused(Exception):
    """A request refused before it reached the Broker: an HTTP status and one line."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Guard:
    """The UI's security settings and the keys derived from them."""

    token: str | None = None
    read_only: bool = False
    loopback_only: bool = True
    key: bytes = field(default=b"", repr=False)
    #: ``scheme://host[:port]`` of ``--public-url``: the origin browsers see behind a
    #: TLS proxy (this server sees plain http, so it cannot build that origin itself).
    public_origin: str | None = None

    @classmethod
    def create(
        cls, token: str | None, *, read_only: bool, loopback_only: bool,
        public_origin: str | None = None,
    ) -> "Guard":
        key = (
            hashlib.sha256(b"runq-ui-session:" + token.encode()).digest()
            if token else secrets.token_bytes(32)
        )
        return cls(
            token=token, read_only=read_only, loopback_only=loopback_only, key=key,
            public_origin=public_origin,
        )

    def _mac(self, purpose: str, value: str) -> str:
        data = f"{purpose}:{value}".encode("utf-8", "surrogateescape")
        return hmac.new(self.key, data, hashlib.sha256).hexdigest()

    # ---- sessions and CSRF tokens ----

    def new_session(self) -> str:
        """A signed session cookie value: ``id.signature``."""
        session_id = secrets.token_urlsafe(18)
        return f"{session_id}.{self._mac('session', session_id)}"

    def session_id(self, request: Request) -> str | None:
        """The id of the request's valid session, if it has one."""
        value = request.cookies.get(SESSION_COOKIE, "")
        session_id, _, signature = value.partition(".")
        if session_id and same(signature, self._mac("session", session_id)):
            return session_id
        return None

    def csrf_token(self, request: Request) -> str:
        """The token this page's forms send back: bound to the session (or, without a
        token configured, to this process)."""
        return self._mac("csrf", self.session_id(request) or "")

    def logged_in(self, request: Request) -> bool:
        return self.token is None or self.session_id(request) is not None

    def token_matches(self, given: str) -> bool:
        return self.token is not None and same(given, self.token)

    # ---- checks ----

    def check_host(self, request: Request) -> None:
        """Loopback-only servers answer only to a loopback Host (DNS rebinding)."""
        if not self.loopback_only:
            return
        host = request.headers.get("host", "")
        if self.public_origin is not None and host.lower() == self.public_origin.split("://", 1)[1]:
            return  # the proxy in front passes the public Host on
        name = host.rsplit(":", 1)[0] if not host.startswith("[") else host[1:].split("]")[0]
        if name not in LOOPBACK_HOSTS:
            raise Refused(421, f"This runq ui answers only to 127.0.0.1 or localhost, not {host!r}.")

    def check_origin(self, request: Request) -> None:
        """A browser's write must come from a page of this server."""
        site = request.headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            raise Refused(403, f"Cross-site request refused (Sec-Fetch-Site: {site}).")
        origin = request.headers.get("origin")
        if origin is not None:
            own = f"{request.url.scheme}://{request.headers.get('host', '')}"
            if origin != own and origin != self.public_origin:
                raise Refused(403, f"Cross-site request refused: Origin {origin!r} is not {own!r}.")

    def check_write(self, request: Request) -> None:
        """Refuse a write unless the UI allows writes and the request may make them."""
        if self.read_only:
            raise Refused(403, "This runq ui is read-only (--read-only): writes are refused.")
        self.check_origin(request)
        bearer = request.headers.get("authorization", "")
        if bearer.lower().startswith("bearer "):
            if self.token is None or not self.token_matches(bearer[7:].strip()):
                raise Refused(401, "Wrong UI token in the Authorization header.")
            return
        from_browser = any(
            name in request.headers for name in ("origin", "sec-fetch-site", "cookie")
        )
        if self.token is not None and self.session_id(request) is None:
            raise Refused(401, (
                "This write needs the UI token: send 'Authorization: Bearer TOKEN' "
                "or log in at /login."
            ))
        if self.token is not None or from_browser:
            given = request.headers.get(CSRF_HEADER, "")
            if not same(given, self.csrf_token(request)):
                raise Refused(403, "Missing or wrong CSRF token (X-CSRF-Token): reload the page.")
