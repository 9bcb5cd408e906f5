"""Who may read and write through ``runq ui``, and how a browser is kept from being
tricked into it.

- Bound to loopback, only requests naming a loopback ``Host`` (or ``--public-url``'s) are
  served: a DNS-rebinding page cannot reach it. Off loopback, ``Host`` must be
  ``--public-url``'s, an IP address or localhost: a rebinding page's Host is the
  attacker's own name, never one of those, so it is answered 421 and reads nothing.
- With a token (``RUNQ_UI_TOKEN`` or ``--token-file``), every write needs it: the
  ``Authorization: Bearer`` header, or a session the login form opened plus that
  session's CSRF token in ``X-CSRF-Token``. Off loopback (or behind ``--public-url``)
  reads need it too, unless ``--public-read`` says reads are for anyone.
- Sessions live in Redis (``broker/ui_sessions.py``): logout ends one on the server and
  every session ends after ``--session-max-age``. The cookie is HttpOnly,
  SameSite=Strict, Secure behind an https public URL; its signature and the CSRF tokens
  are HMACs keyed by the token, so changing the token ends every session.
- Every write from a browser must come from this origin (``Origin``/``Sec-Fetch-Site``),
  or from ``--public-url``'s.
- ``--read-only`` refuses every write whatever the credentials.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from dataclasses import dataclass, field

from starlette.requests import Request

SESSION_COOKIE = "runq_session"
CSRF_HEADER = "x-csrf-token"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Where a request's resolved credentials are kept (``request.state``).
CREDENTIALS = "runq_credentials"
#: Twelve hours: a working day, then log in again.
DEFAULT_SESSION_AGE = 12 * 3600.0


def same(given: str, expected: str) -> bool:
    """Constant-time comparison of text from a request: as bytes, because
    ``hmac.compare_digest`` raises TypeError on non-ASCII ``str`` (a header or cookie
    holding ``é`` must be refused, not answered with a 500)."""
    return hmac.compare_digest(
        given.encode("utf-8", "surrogateescape"),
        expected.encode("utf-8", "surrogateescape"),
    )


def host_name(host: str) -> str:
    """The name in a ``Host`` header, without its port (``[::1]:80`` -> ``::1``)."""
    if host.startswith("["):
        return host[1:].split("]")[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class Refused(Exception):
    """A request refused before it reached the Broker: an HTTP status and one line."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


@dataclass(frozen=True)
class Credentials:
    """What a request proved, resolved once by the access middleware: a live session's
    id, or the right bearer token."""

    session_id: str | None = None
    bearer: bool = False

    @property
    def authorized(self) -> bool:
        return self.bearer or self.session_id is not None


def credentials_of(request: Request) -> Credentials:
    found = getattr(request.state, CREDENTIALS, None)
    return found if isinstance(found, Credentials) else Credentials()


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
    #: ``--public-read``: reads need no token even off loopback.
    public_read: bool = False
    #: Seconds a session lives (``--session-max-age``).
    session_age: float = DEFAULT_SESSION_AGE

    @classmethod
    def create(
        cls,
        token: str | None,
        *,
        read_only: bool,
        loopback_only: bool,
        public_origin: str | None = None,
        public_read: bool = False,
        session_age: float = DEFAULT_SESSION_AGE,
    ) -> Guard:
        key = (
            hashlib.sha256(b"runq-ui-session:" + token.encode()).digest()
            if token
            else secrets.token_bytes(32)
        )
        return cls(
            token=token,
            read_only=read_only,
            loopback_only=loopback_only,
            key=key,
            public_origin=public_origin,
            public_read=public_read,
            session_age=session_age,
        )

    @property
    def reads_need_token(self) -> bool:
        """Reads are guarded when others can reach this UI: off loopback, or published
        by a proxy (``--public-url``); ``--public-read`` opens them on purpose."""
        exposed = not self.loopback_only or self.public_origin is not None
        return self.token is not None and exposed and not self.public_read

    @property
    def secure_cookie(self) -> bool:
        """Browsers reach an https public URL: the cookie must never travel over http."""
        return (self.public_origin or "").startswith("https://")

    def _mac(self, purpose: str, value: str) -> str:
        data = f"{purpose}:{value}".encode("utf-8", "surrogateescape")
        return hmac.new(self.key, data, hashlib.sha256).hexdigest()

    # ---- sessions and CSRF tokens ----

    def new_session(self) -> tuple[str, str]:
        """A new session's id and its signed cookie value ``id.signature``."""
        session_id = secrets.token_urlsafe(18)
        return session_id, f"{session_id}.{self._mac('session', session_id)}"

    def signed_session(self, request: Request) -> str | None:
        """The session id of the request's cookie if its signature holds (whether the
        session is still open is Redis' answer: see ``access.py``)."""
        value = request.cookies.get(SESSION_COOKIE, "")
        session_id, _, signature = value.partition(".")
        if session_id and same(signature, self._mac("session", session_id)):
            return session_id
        return None

    def csrf_token(self, request: Request) -> str:
        """The token this page's forms send back: bound to the session (or, without a
        token configured, to this process)."""
        return self._mac("csrf", credentials_of(request).session_id or "")

    def logged_in(self, request: Request) -> bool:
        return self.token is None or credentials_of(request).authorized

    def token_matches(self, given: str) -> bool:
        return self.token is not None and same(given, self.token)

    # ---- checks ----

    def check_host(self, request: Request) -> None:
        """Answer only Hosts a DNS-rebinding page cannot forge (see the module's text)."""
        host = request.headers.get("host", "").lower()
        if self.public_origin is not None and host == self.public_origin.split("://", 1)[1]:
            return  # the proxy in front passes the public Host on
        name = host_name(host)
        if name in LOOPBACK_HOSTS:
            return
        if self.loopback_only:
            raise Refused(
                421, f"This runq ui answers only to 127.0.0.1 or localhost, not {host!r}."
            )
        if not is_ip(name):
            raise Refused(
                421,
                (
                    f"This runq ui answers only to an IP address or its --public-url, not {host!r}: "
                    f"start it with --public-url http://{host or 'HOST'} to use that name."
                ),
            )

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

    def check_read(self, request: Request) -> None:
        """Refuse a read of runq's data without the token where reads are guarded."""
        if self.reads_need_token and not credentials_of(request).authorized:
            raise Refused(
                401,
                (
                    "This runq ui needs the token to read: send 'Authorization: Bearer TOKEN' "
                    "or log in at /login."
                ),
            )

    def check_write(self, request: Request) -> None:
        """Refuse a write unless the UI allows writes and the request may make them."""
        if self.read_only:
            raise Refused(403, "This runq ui is read-only (--read-only): writes are refused.")
        self.check_origin(request)
        credentials = credentials_of(request)
        if request.headers.get("authorization", "").lower().startswith("bearer "):
            if not credentials.bearer:  # the middleware refuses a wrong one first
                raise Refused(401, "Wrong UI token in the Authorization header.")
            return
        from_browser = any(
            name in request.headers for name in ("origin", "sec-fetch-site", "cookie")
        )
        if self.token is not None and credentials.session_id is None:
            raise Refused(
                401,
                (
                    "This write needs the UI token: send 'Authorization: Bearer TOKEN' "
                    "or log in at /login."
                ),
            )
        if self.token is not None or from_browser:
            given = request.headers.get(CSRF_HEADER, "")
            if not same(given, self.csrf_token(request)):
                raise Refused(403, "Missing or wrong CSRF token (X-CSRF-Token): reload the page.")
