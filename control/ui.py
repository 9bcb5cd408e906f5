"""``runq ui``: the web pages and the JSON API, served from one process over the Broker.

Binds 127.0.0.1 by default. Any other address needs a token (``RUNQ_UI_TOKEN`` or
``--token-file``), which every write then requires; ``--read-only`` refuses every write.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from pathlib import Path
from urllib.parse import urlsplit

import click

from runq.broker import Broker
from runq.broker.connection import mask_url
from runq.broker.settings import setting

from .connection import with_broker
from .errors import fail
from .log_format import configure_logging, log_format_option

#: Shortest token accepted: a guessable token would be no protection.
MIN_TOKEN_LENGTH = 16
#: Seconds open event streams get to close when the server stops.
SHUTDOWN_GRACE_SECONDS = 3


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
    "--port", type=click.IntRange(0, 65535), default=4200, show_default=True,
    help="Port to listen on (0: any free port, printed at start).",
)
@click.option("--read-only", is_flag=True, help="Hide every action and refuse every write.")
@click.option(
    "--token-file", type=click.Path(path_type=Path, dir_okay=False),
    help="File holding the token writes need (default: RUNQ_UI_TOKEN). "
    "Required to listen on any address but 127.0.0.1.",
)
@click.option(
    "--public-url", metavar="URL",
    help="URL browsers use behind a TLS proxy, e.g. https://runq.example.com: writes "
    "from its origin are accepted (default: RUNQ_UI_PUBLIC_URL).",
)
@log_format_option
@with_broker
def ui(
    broker: Broker, host: str, port: int, read_only: bool, token_file: Path | None,
    public_url: str | None, log_format: str,
) -> None:
    """Serve the web UI and its JSON API (/api/...) over this Redis.

    Pages update live as queues and runs change. The Redis URL never reaches the
    browser. Off 127.0.0.1 a token is required: every write needs it (the
    'Authorization: Bearer TOKEN' header, or the login form's session).

    \b
    Examples:
        runq ui
        runq ui --port 8080 --read-only
        RUNQ_UI_TOKEN=$(openssl rand -hex 16) runq ui --host 0.0.0.0
        runq ui --host 0.0.0.0 --token-file /run/secrets/ui-token
        runq ui --token-file ui-token --public-url https://runq.example.com
    """
    import uvicorn

    from runq.ui.app import create_app
    from runq.ui.security import Guard

    token = read_token(token_file)
    origin = public_origin(public_url if public_url is not None else setting("ui_public_url"))
    loopback = is_loopback(host)
    if not loopback and token is None:
        fail(
            f"runq ui refuses to listen on {host} without a token: set RUNQ_UI_TOKEN or "
            "pass --token-file FILE (every write will need it), or keep --host 127.0.0.1."
        )
    broker.server_time()  # an unreachable Redis is one line now, not a page later
    configure_logging(log_format, logging.INFO, loggers=("runq", "uvicorn", "uvicorn.error"))
    # a token does not stand in for the Host check: a rebinding page could still read
    guard = Guard.create(
        token, read_only=read_only, loopback_only=loopback, public_origin=origin,
    )
    app = create_app(broker, guard)
    sock = bind(host, port)
    shown = f"[{host}]" if ":" in host else host
    mode = " (read-only)" if read_only else ""
    click.echo(
        f"runq ui{mode} on http://{shown}:{sock.getsockname()[1]}/ over Redis at "
        f"{mask_url(broker.url)}",
        err=False,
    )
    config = uvicorn.Config(
        app, log_config=None, access_log=False, lifespan="on",
        timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
    )
    uvicorn.Server(config).run(sockets=[sock])
