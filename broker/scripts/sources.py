"""The text Redis runs for each script, composed from its file and the helper files its
header includes, and the way back from a line of that text to a line of a file.

A script's header (its leading comment block) says what it uses:

- ``-- KEYS[n] name  ...`` the keys it receives, in order; ``-- KEYS[n..] name`` one key
  per item of a repeated group (heartbeat.lua: one record per run);
- ``-- ARGV[n] name  ...`` its arguments; ``-- ARGV[n..] a, b  ...`` a repeated group
  (names may run on to the next line after a trailing comma); ``-- ARGV: none``;
- ``-- Includes: a, b`` the files ``include/a.lua``, ``include/b.lua`` whose functions
  its own code calls;
- ``-- Includes on demand: c`` helper files its code puts where a directive line
  ``--#include c`` stands (inside a block), so their functions are defined only when
  that block runs (claim.lua: the helpers that settle expired leases).

A helper file's header says ``-- Includes:`` and ``-- Needs KEYS:`` (the keys its own
code uses). The composed text is the script's Redis 7 flags line (Redis reads it only as
the very first line), one line binding each declared key to a local named after it
(``config`` -> ``K_CONFIG = KEYS[1]``), every helper file the script includes,
transitively, each once and after the ones it includes itself, and then the script's own
code, each ``--#include`` directive replaced by the helper files it brings in that the
script did not include already. A helper that needs a key the script does not declare
is refused here, before anything reaches Redis.

Redis reports an error inside a script as ``user_script:N``, N a line of the composed
text; :func:`locate` turns it back into the file and line it came from
(``include/release.lua:9 (included by claim.lua)``), finding the script by the SHA-1 in
the message.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

INCLUDE_DIR = "include"
#: The wake-up helper's command and counting lines, and what a cluster makes of them
#: (include/wake.lua explains why).
WAKE_PUBLISH = "local WAKE_PUBLISH = 'PUBLISH'"
WAKE_SPUBLISH = "local WAKE_PUBLISH = 'SPUBLISH'"
WAKE_COUNTED = "local WAKE_COUNTED = true"
WAKE_UNCOUNTED = "local WAKE_COUNTED = false"

_ENTRY = re.compile(r"^--\s+(KEYS|ARGV)\[(\d+)(\.\.)?\]\s+(.*)$")
_NAMES = re.compile(r"^([a-z_][a-z0-9_]*(?:,\s*[a-z_][a-z0-9_]*)*)(,?)(?:\s|$)")
_LIST = re.compile(r"^--\s+(Includes on demand|Includes|Needs KEYS):\s*(.*)$")
_DIRECTIVE = re.compile(r"^\s*--#include\s+([a-z_]+)\s*$")
_LOCATION = re.compile(r"@?user_script: ?(\d+)(?::\s*@?user_script: ?\1\b)?")
_SHA = re.compile(r"\b(?:f_)?([0-9a-f]{40})\b")


class ScriptLayoutError(Exception):
    """A script or helper file whose header does not parse or does not add up."""


@dataclass(frozen=True)
class Header:
    """What a script's or helper file's header declares."""

    keys: tuple[str, ...] = ()
    keys_rest: tuple[str, ...] = ()
    argv: tuple[str, ...] = ()
    argv_rest: tuple[str, ...] = ()
    includes: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()
    on_demand: tuple[str, ...] = ()


@dataclass(frozen=True)
class Part:
    """Lines ``start .. start + count - 1`` of a composed text are lines ``first ..`` of
    ``file`` (a path under broker/scripts)."""

    file: str
    start: int
    count: int
    first: int


@dataclass(frozen=True)
class Composed:
    """One script as Redis runs it, with the map back to its files."""

    name: str
    text: str
    header: Header
    includes: tuple[str, ...]  # every helper file in it, in the order it holds them
    parts: tuple[Part, ...]

    def where(self, line: int) -> str:
        """The file and line that line ``line`` of the composed text came from."""
        for part in self.parts:
            if part.start <= line < part.start + part.count:
                place = f"{part.file}:{part.first + line - part.start}"
                if part.file != f"{self.name}.lua":
                    place += f" (included by {self.name}.lua)"
                return place
        return f"{self.name}.lua (the KEYS it binds, composed line {line})"


def read(path: str) -> str:
    """A file of this package: ``claim.lua`` or ``include/wake.lua``."""
    return resources.files(__package__).joinpath(path).read_text()


def header_lines(text: str) -> list[str]:
    """The leading comment block of a file, after its flags line."""
    lines = text.splitlines()
    if lines and lines[0].startswith("#!"):
        lines = lines[1:]
    block = []
    for line in lines:
        if not line.startswith("--"):
            break
        block.append(line)
    return block


def parse_header(text: str, file: str) -> Header:
    """The header of ``file`` (its text ``text``); ScriptLayoutError if it does not add up."""
    entries: dict[str, list[tuple[int, bool, tuple[str, ...]]]] = {"KEYS": [], "ARGV": []}
    lists: dict[str, tuple[str, ...]] = {}
    lines = header_lines(text)
    for number, line in enumerate(lines):
        if entry := _ENTRY.match(line):
            kind, index, rest, tail = entry.groups()
            names = _names(tail, lines[number + 1 :], file)
            entries[kind].append((int(index), bool(rest), names))
        elif listed := _LIST.match(line):
            value = listed.group(2).split("(")[0]  # a remark in parentheses follows
            words = [word.strip() for word in value.split(",")]
            lists[listed.group(1)] = tuple(w for w in words if w and w != "none")
    keys, keys_rest = _ordered(entries["KEYS"], file, "KEYS")
    argv, argv_rest = _ordered(entries["ARGV"], file, "ARGV")
    if "Includes" not in lists:
        raise ScriptLayoutError(f"{file}: no '-- Includes:' line in its header")
    return Header(
        keys,
        keys_rest,
        argv,
        argv_rest,
        lists["Includes"],
        lists.get("Needs KEYS", ()),
        lists.get("Includes on demand", ()),
    )


def _names(tail: str, following: list[str], file: str) -> tuple[str, ...]:
    """The names an entry declares: ``tail``, run on to the next lines after a comma."""
    names: list[str] = []
    while True:
        found = _NAMES.match(tail)
        if not found:
            raise ScriptLayoutError(f"{file}: no name in header entry {tail!r}")
        names += [name.strip() for name in found.group(1).split(",")]
        if not found.group(2) or not following:
            return tuple(names)
        tail, following = following[0][2:].strip(), following[1:]


def _ordered(
    entries: list[tuple[int, bool, tuple[str, ...]]], file: str, kind: str
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Fixed names numbered 1..n, then at most one repeated group numbered n + 1."""
    fixed: list[str] = []
    rest: tuple[str, ...] = ()
    for index, repeated, names in entries:
        if index != len(fixed) + 1 or rest:
            raise ScriptLayoutError(f"{file}: {kind}[{index}] is out of order")
        if repeated:
            rest = names
        elif len(names) != 1:
            raise ScriptLayoutError(f"{file}: {kind}[{index}] names one item")
        else:
            fixed.append(names[0])
    return tuple(fixed), rest


@cache
def helper(name: str) -> Header:
    """The header of helper file ``include/NAME.lua``."""
    return parse_header(read(f"{INCLUDE_DIR}/{name}.lua"), f"{INCLUDE_DIR}/{name}.lua")


def resolve(includes: tuple[str, ...], file: str, present: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Every helper file ``includes`` brings in, transitively, each after the ones it
    includes itself, leaving out those ``present`` already."""
    order: list[str] = list(present)

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in path:
            raise ScriptLayoutError(f"{file}: include cycle {' -> '.join(path + (name,))}")
        if name in order:
            return
        try:
            header = helper(name)
        except FileNotFoundError:
            raise ScriptLayoutError(f"{file}: no helper file {INCLUDE_DIR}/{name}.lua") from None
        for inner in header.includes:
            visit(inner, path + (name,))
        order.append(name)

    for name in includes:
        visit(name, ())
    return tuple(order[len(present) :])


def local_name(key: str) -> str:
    """The local a declared key is bound to: ``config`` -> ``K_CONFIG``."""
    return "K_" + key.upper()


class _Text:
    """A composed text being put together, with the map back to its files."""

    def __init__(self, sharded: bool, cluster: bool) -> None:
        self.lines: list[str] = []
        self.parts: list[Part] = []
        self.sharded, self.cluster = sharded, cluster

    def add(self, file: str, lines: list[str], first: int) -> None:
        self.parts.append(Part(file, len(self.lines) + 1, len(lines), first))
        self.lines.extend(lines)

    def helpers(self, names: tuple[str, ...]) -> None:
        for name in names:
            text = _adapted(read(f"{INCLUDE_DIR}/{name}.lua"), self.sharded, self.cluster)
            self.add(f"{INCLUDE_DIR}/{name}.lua", text, 1)

    def body(self, file: str, body: list[str], first: int, top: tuple[str, ...]) -> list[str]:
        """The script's own lines, each ``--#include`` directive replaced by the helpers
        it brings in beyond ``top``; returns the names the directives include."""
        directives: list[str] = []
        start = 0
        for index, line in enumerate(body):
            directive = _DIRECTIVE.match(line)
            if directive:
                self.add(file, body[start:index], first + start)
                start = index + 1
                self.helpers(resolve((directive.group(1),), file, top))
                directives.append(directive.group(1))
        self.add(file, body[start:], first + start)
        return directives

    def included(self) -> tuple[str, ...]:
        """Every helper file in the text, in the order it holds them."""
        files = [part.file for part in self.parts if part.file.startswith(f"{INCLUDE_DIR}/")]
        return tuple(file[len(INCLUDE_DIR) + 1 : -len(".lua")] for file in files)


@cache
def compose(
    name: str, shebang: bool = True, sharded: bool = False, cluster: bool = False
) -> Composed:
    """Script ``name`` as Redis runs it. ``shebang``: keep the file's Redis 7 flags line
    (False for Redis 6.2, which does not know it); ``sharded``: wake-ups by SPUBLISH (a
    Redis 7 cluster); ``cluster``: a Redis Cluster, whose PUBLISH replies count one node."""
    file = f"{name}.lua"
    own = read(file)
    header = parse_header(own, file)
    body, first = own.splitlines(), 1
    text = _Text(sharded, cluster)
    if body and body[0].startswith("#!"):
        if shebang:
            text.lines.append(body[0])
        body, first = body[1:], 2
    if header.keys:
        bound = ", ".join(f"KEYS[{n}]" for n in range(1, len(header.keys) + 1))
        text.lines.append(f"local {', '.join(map(local_name, header.keys))} = {bound}")
    top = resolve(header.includes, file)
    text.helpers(top)
    if sorted(text.body(file, body, first, top)) != sorted(header.on_demand):
        raise ScriptLayoutError(
            f"{file}: its '--#include' lines differ from its header's "
            f"'Includes on demand: {', '.join(header.on_demand)}'"
        )
    includes = text.included()
    _check_needs(file, header, includes)
    composed = Composed(name, "\n".join(text.lines) + "\n", header, includes, tuple(text.parts))
    _BY_SHA[hashlib.sha1(composed.text.encode()).hexdigest()] = composed
    return composed


def _check_needs(file: str, header: Header, includes: tuple[str, ...]) -> None:
    """Refuse a helper that needs a key the script does not declare."""
    for included in includes:
        missing = [key for key in helper(included).needs if key not in header.keys]
        if missing:
            raise ScriptLayoutError(
                f"{file} includes {included}.lua, which needs KEYS {', '.join(missing)}"
            )


def _adapted(text: str, sharded: bool, cluster: bool) -> list[str]:
    """A helper file's lines, its wake-up lines adapted to the deployment."""
    if sharded:
        text = text.replace(WAKE_PUBLISH, WAKE_SPUBLISH, 1)
    elif cluster:
        text = text.replace(WAKE_COUNTED, WAKE_UNCOUNTED, 1)
    return text.splitlines()


_BY_SHA: dict[str, Composed] = {}


def locate(message: str, composed: Composed | None = None) -> str:
    """``message`` (an error Redis raised inside a script) with every ``user_script:N``
    turned into the file and line it came from. The script is the one whose SHA-1 the
    message names, else ``composed``; a message naming neither is returned as it is."""
    sha = _SHA.search(message)
    script = (_BY_SHA.get(sha.group(1)) if sha else None) or composed
    if script is None:
        return message
    return _LOCATION.sub(lambda found: script.where(int(found.group(1))), message)
