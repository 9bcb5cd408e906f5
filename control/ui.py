"""``runq ui``: the web pages and the JSON API, served from one process over the Broker.

Binds 127.0.0.1 by default. Any other address needs a token (``RUNQ_UI_TOKEN`` or
``--token-file``), which every write then requires, and every read too unless
``--public-read``; ``--read-only`` refuses every write. Waits for Redis at start as it
rides out an outage later (``control/startup.py``).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import click

from runq.broker import Broker
from runq.broker.connection import mask_url
from runq.broker.settings import setting

from .connection import with_broker
from .durations import Duration
from .errors import fail
from .log_format import configure_logging, log_format_option, say
from .startup import wait_for_redis

#: Shortest token accepted: a guessable token would be no protection.
MIN_TOKEN_LENGTH = 16
#: Seconds open event streams get to close when the server stops.
SHUTDOWN_GRACE_SECONDS = 3


#: ``with_broker`` for this service (a Broker made without contacting Redis: the command
#: waits for it below), typed for mypy (``with_broker`` returns Any).
ui_service: Callable[[Callable[..., None]], Callable[..., None]] = with_broker(service="ui")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def read_token(token_file: Path | None) -> str | None:
    """The UI token: the file's content (stripped) or ``RUNQ_UI_TOKEN``; None if neither."""
    if token_file is not None:
        try:
            token = token_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as error:
            fail(f"Cannot read the token file {str(token_file)!r}: {error}.")
        if not token:
            fail(f"The token file {str(token_file)!r} is empty.")
    else:
        token = setting("ui_token")
    if token is not None and (len(token) < MIN_TOKEN_LENGTH or not token.isprintable()):
        fail(f"The UI token must be at least {MIN_TOKEN_LENGTH} printable characters.")
    return token


def public_origin(url: str | None) -> str | None:
    """The origin (``scheme://host[:port]``, the default port left out as browsers do)
    of ``--public-url``/``RUNQ_UI_PUBLIC_URL``; None without one."""
    if not url:
        return None
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        port, parts = None, urlsplit("")
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username:
        fail(f"The public URL must look like https://runq.example.com, not {url!r}.")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    default = {"http": 80, "https": 443}[parts.scheme]
    return f"{parts.scheme}://{host}" + (f":{port}" if port not in (None, default) else "")


def bind(host: str, port: int) -> socket.socket:
    """The listening socket (port 0: a free port, printed once bound)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # accepted connections inherit it: a keep-alive response's headers and body, written
    # apart, must not wait for the client's delayed ACK (40 ms per request otherwise)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as error:
        sock.close()
        fail(f"Cannot listen on {host}:{port}: {error.strerror or error}.")
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


@click.command("ui")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=4200,
    show_default=True,
    help="Port to listen on (0: any free port, printed at start).",
)
@click.option("--read-only", is_flag=True, help="Hide every action and refuse every write.")
@click.option(
    "--token-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="File holding the UI token (default: RUNQ_UI_TOKEN). Required to listen on any "
    "address but 127.0.0.1; every write needs it, and off 127.0.0.1 every read too.",
)
@click.option(
    "--public-url",
    metavar="URL",
    help="URL browsers use behind a TLS proxy, e.g. https://runq.example.com: its Host is "
    "served, writes from its origin are accepted, an https URL makes the session cookie "
    "Secure, and with a token reads need it (default: RUNQ_UI_PUBLIC_URL).",
)
@click.option(
    "--public-read",
    is_flag=True,
    help="Let anyone who reaches the UI read every queue, run, parameter and log without "
    "the token (writes still need it). Off by default.",
)
@click.option(
    "--session-max-age",
    type=Duration(minimum=1),
    default="12h",
    show_default=True,
    metavar="DURATION",
    help="A login session ends this long after it started (e.g. 8h, 30m).",
)
@click.option(
    "--max-connections",
    type=click.IntRange(1),
    metavar="N",
    help="Connections held at once; more are answered 503 (default: 1024, or fewer to stay "
    "under the process's open-file limit, ulimit -n).",
)
@click.option(
    "--request-timeout",
    type=Duration(minimum=0.1),
    default="10s",
    show_default=True,
    metavar="DURATION",
    help="Time a client gets to send a whole request (headers and body); slower ones are cut off.",
)
@log_format_option
@ui_service
def ui(
    broker: Broker,
    host: str,
    port: int,
    read_only: bool,
    token_file: Path | None,
    public_url: str | None,
    public_read: bool,
    session_max_age: float,
    max_connections: int | None,
    request_timeout: float,
    log_format: str,
) -> None:
    """Serve the web UI and its JSON API (/api/...) over this Redis.

    Pages update live as queues and runs change. The Redis URL never reaches the
    browser. Off 127.0.0.1 a token is required, and every read and write needs it
    (the 'Authorization: Bearer TOKEN' header, or the login form's session) unless
    --public-read opens the reads. /healthz says the process is alive, /readyz that
    Redis answers (both open to probes).

    \b
    Examples:
        runq ui
        runq ui --port 8080 --read-only
        RUNQ_UI_TOKEN=$(openssl rand -hex 16) runq ui --host 0.0.0.0
        runq ui --host 0.0.0.0 --token-file /run/secrets/ui-token --session-max-age 8h
        runq ui --token-file ui-token --public-url https://runq.example.com
        runq ui --host 0.0.0.0 --token-file ui-token --public-read --read-only
        runq ui --host 0.0.0.0 --token-file ui-token --max-connections 200 --request-timeout 5s
    """
    from runq.ui.app import create_app
    from runq.ui.security import Guard
    from runq.ui.serving import check_max_connections, default_max_connections, serve

    configure_logging(log_format, logging.INFO, loggers=("runq", "uvicorn", "uvicorn.error"))
    token = read_token(token_file)
    origin = public_origin(public_url if public_url is not None else setting("ui_public_url"))
    loopback = is_loopback(host)
    if not loopback and token is None:
        fail(
            f"runq ui refuses to listen on {host} without a token: set RUNQ_UI_TOKEN or "
            "pass --token-file FILE (every read and write will need it), or keep --host 127.0.0.1."
        )
    if public_read and token is None:
        fail(
            "--public-read opens reads that a token would guard: give a token too, or leave it out."
        )
    if max_connections is not None and (problem := check_max_connections(max_connections)):
        fail(problem)
    wait_for_redis(broker, "ui")  # as through a later outage, with the same lines
    # a token does not stand in for the Host check: a rebinding page could still read
    guard = Guard.create(
        token,
        read_only=read_only,
        loopback_only=loopback,
        public_origin=origin,
        public_read=public_read,
        session_age=session_max_age,
    )
    app = create_app(broker, guard)
    sock = bind(host, port)
    shown = f"[{host}]" if ":" in host else host
    mode = " (read-only)" if read_only else ""
    say(
        f"runq ui{mode} on http://{shown}:{sock.getsockname()[1]}/ over Redis at "
        f"{mask_url(broker.url)}",
        "runq.ui",
    )
    serve(
        app,
        sock,
        max_connections=max_connections or default_max_connections(),
        request_timeout=request_timeout,
        grace_seconds=SHUTDOWN_GRACE_SECONDS,
    )
