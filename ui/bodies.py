"""Request bodies, read within their bounds while they arrive: a JSON object or a form.

Neither uvicorn nor Starlette bounds a body (``request.body()`` reads it whole, however
large), so the size is checked here as the bytes come: a ``Content-Length`` over the
bound is refused before a byte is read, and a chunked body as soon as it passes it
(HTTP 413, and the connection is closed rather than drained). JSON nested deeper than
``MAX_DEPTH`` is refused (Python's parser would raise RecursionError on 100,000
brackets, and deep values cost every later reader), and a form must be UTF-8 as the JSON
path must: ``%FF`` is refused, never stored as U+FFFD or Latin-1.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import ClientDisconnect, Request

from runq.broker import InvalidInput

from .security import Refused

MAX_BODY_BYTES = 1 << 20
#: Levels of nesting a JSON body or a JSON field may hold.
MAX_DEPTH = 64
#: Fields a form may hold (the largest form of the pages has four).
MAX_FORM_FIELDS = 100
JSON_TYPE = "application/json"
FORM_TYPE = "application/x-www-form-urlencoded"


def too_large() -> Refused:
    return Refused(
        413, f"The request body is over {MAX_BODY_BYTES} bytes.", headers={"Connection": "close"}
    )


async def read_body(request: Request) -> bytes:
    """The body's bytes, at most ``MAX_BODY_BYTES``; refused (413) past that."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise too_large()
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise too_large()
            chunks.append(chunk)
    except ClientDisconnect:  # gone, or cut by the server's request timeout
        raise Refused(408, "The request body did not arrive in time.") from None
    return b"".join(chunks)


def depth_of(value: Any) -> int:
    """How deeply ``value`` nests lists and objects (iterative: no recursion to exhaust)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, level)
            if level > MAX_DEPTH:
                break
            stack.extend((child, level + 1) for child in item)
    return deepest


def parse_json(text: str | bytes, what: str) -> Any:
    """JSON text as a value; one line for a mistake, including too deep a nesting."""
    try:
        value = json.loads(text)
    except RecursionError:
        value, nested = None, True
    except ValueError as error:
        raise InvalidInput(f"{what} is not JSON: {error}.") from None
    else:
        nested = depth_of(value) > MAX_DEPTH
    if nested:
        raise InvalidInput(f"{what} nests deeper than {MAX_DEPTH} levels.")
    return value


def parse_form(raw: bytes) -> dict[str, str]:
    """A URL-encoded form's fields; invalid UTF-8 (raw or %-escaped) is refused."""
    try:
        pairs = parse_qsl(
            raw.decode("utf-8"),
            keep_blank_values=True,
            strict_parsing=False,
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_FORM_FIELDS,
        )
    except UnicodeDecodeError:
        raise InvalidInput("The form is not valid UTF-8.") from None
    except ValueError:
        raise InvalidInput(f"The form has more than {MAX_FORM_FIELDS} fields.") from None
    return dict(pairs)


async def body_of(request: Request) -> dict[str, Any]:
    """A JSON object body, or a form's fields (the pages post forms)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    raw = await read_body(request)
    if not raw:
        return {}
    if kind == JSON_TYPE:
        data = parse_json(raw, "The body")
        if not isinstance(data, dict):
            raise InvalidInput("The body must be a JSON object.")
        return data
    if kind in (FORM_TYPE, ""):
        return parse_form(raw)
    raise Refused(415, f"Send a JSON object ({JSON_TYPE}) or a form ({FORM_TYPE}), not {kind}.")


async def form_of(request: Request) -> dict[str, str]:
    """A URL-encoded form (the login form), within the same bounds."""
    return parse_form(await read_body(request))
