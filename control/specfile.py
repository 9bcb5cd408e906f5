"""Reading a deployment YAML file, with errors that name the field and its line.

PyYAML builds a node tree that remembers where each key and value starts; pydantic names
the failing field by its path (``infrastructure.image``). Walking that path through the
nodes gives the line to report, so an operator can go straight to the mistake.

The document is bounded in bytes before it is built: YAML aliases share nodes, so a file
of a few kilobytes can stand for gigabytes (a "billion laughs"). The size the document
would have as JSON, aliases and ``<<`` merges expanded, is computed on the node graph
(once per node) and a file over the deployment bound is refused without being built.

Every problem of a file is reported at once (unknown fields, bad values, each with its
line), so fixing a file takes one edit, not one run per field. A ``prefect deployment
build`` file is read as it is: the Prefect 2 fields that mean nothing here are dropped
and named (``prefect_fields.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import yaml
from pydantic import ValidationError

from runq.broker import BrokerSettings, DeploymentSpec, InvalidInput
from runq.broker.models import check_bytes
from runq.broker.settings import ENV_SETTINGS

from .prefect_fields import strip_prefect_fields

#: A deployment file may be this many times the deployment bound (comments, indentation)
#: before it is refused unread: parsing costs far more per byte than storing.
FILE_BYTES_PER_DOCUMENT_BYTE = 2
_LIMIT_VARIABLE = ENV_SETTINGS["max_deployment_bytes"]


class SpecFileError(InvalidInput):
    """A deployment file that cannot be used; the message names file, line and field."""


class LoadedSpec(NamedTuple):
    """A deployment file read: the deployment, and the Prefect 2 fields dropped from it
    (what the one warning line names)."""

    spec: DeploymentSpec
    ignored: list[str]


#: Problems listed in one refusal (the rest are counted).
MAX_PROBLEMS_SHOWN = 20


def load_deployment_spec(path: Path, max_bytes: int | None = None) -> DeploymentSpec:
    """:func:`read_deployment_file`'s deployment."""
    return read_deployment_file(path, max_bytes).spec


def read_deployment_file(path: Path, max_bytes: int | None = None) -> LoadedSpec:
    """Parse and validate ``path`` as one deployment, before anything is written.

    Args:
        path: the YAML file.
        max_bytes: the deployment bound (bytes of JSON, aliases expanded); by default
            ``RUNQ_MAX_DEPLOYMENT_BYTES`` or its default, as the Broker reads it.

    Raises:
        SpecFileError: unreadable or oversized file, bad YAML, a document over the bound
            once expanded, or fields that fail validation (all of them, with their lines).
    """
    if max_bytes is None:
        max_bytes = BrokerSettings.from_env().max_deployment_bytes
    text = _read(path, max_bytes * FILE_BYTES_PER_DOCUMENT_BYTE)
    root, data = _parse(path, text, max_bytes)
    if not isinstance(data, dict):
        line = root.start_mark.line + 1 if root is not None else 1
        raise SpecFileError(
            f"{path}, line {line}: a deployment file must be a mapping of fields "
            "(name, entrypoint, ...)."
        )
    assert root is not None  # a mapping was read from it
    data, ignored, refused = strip_prefect_fields(data)
    problems = [_refusal(root, location, why) for location, why in refused]
    try:
        spec = DeploymentSpec.model_validate(_with_absolute_path(data, path.parent))
    except ValidationError as error:
        problems += [_problem(root, dict(item)) for item in error.errors()]
    if problems:
        raise SpecFileError(_report(path, problems))
    return LoadedSpec(spec, ignored)


def _with_absolute_path(data: dict[str, Any], directory: Path) -> dict[str, Any]:
    """A relative ``path:`` of a process deployment means the file's directory, so the
    file means the same wherever ``apply`` runs (a container's path is in its image)."""
    code_path, infrastructure = data.get("path"), data.get("infrastructure")
    kind = infrastructure.get("type", "process") if isinstance(infrastructure, dict) else "process"
    if kind != "process" or not isinstance(code_path, str) or not code_path:
        return data
    if code_path.startswith("/"):
        return data
    return {**data, "path": str((directory / code_path).resolve())}


def _read(path: Path, max_file_bytes: int) -> str:
    """The file's text (newlines as in text mode), never more than ``max_file_bytes`` read."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(max_file_bytes + 1)
        if len(raw) > max_file_bytes:
            raise SpecFileError(
                f"{path} is more than {max_file_bytes:,} bytes: a deployment file may hold "
                f"{FILE_BYTES_PER_DOCUMENT_BYTE} times the deployment bound at most "
                f"(raise it with {_LIMIT_VARIABLE})."
            )
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise SpecFileError(f"Cannot read {path}: {error}.") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _parse(path: Path, text: str, max_bytes: int) -> tuple[yaml.Node | None, Any]:
    """The document's node tree (for line numbers) and its value, from a single parse.

    The nodes (as many as the file's text allows) are checked before the document is
    constructed: duplicate keys, then the size it would have once aliases are expanded.
    """
    loader = None
    try:
        loader = yaml.SafeLoader(text)  # refuses control characters at once (ReaderError)
        root = loader.get_single_node()
        if root is not None:
            _refuse_duplicate_keys(path, root)  # before construction flattens `<<` merges
            _refuse_oversized(path, root, max_bytes)
        data = loader.construct_document(root) if root is not None else None
    except RecursionError:  # PyYAML composes and constructs nested nodes recursively
        raise SpecFileError(f"{path}: invalid YAML: nested too deeply.") from None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = f", line {mark.line + 1}" if mark else ""
        reason = ", ".join(part for part in (error.context, error.problem) if part)
        raise SpecFileError(f"{path}{line}: invalid YAML: {reason}.") from None
    except yaml.YAMLError as error:
        raise SpecFileError(f"{path}: invalid YAML: {' '.join(str(error).split())}.") from None
    finally:
        if loader is not None:
            loader.dispose()
    return root, data


def _refuse_duplicate_keys(path: Path, root: yaml.Node) -> None:
    """YAML keeps the last of two equal keys silently; in a deployment that hides a typo.

    Nodes are walked in document order without recursion, each once: aliases share
    nodes, may contain themselves, and can multiply the paths to one node enormously.
    """
    visited: set[int] = set()
    pending: list[tuple[yaml.Node, list[str]]] = [(root, [])]
    while pending:
        node, names = pending.pop()
        if id(node) in visited:
            continue
        visited.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            children = [(item, [*names, str(index)]) for index, item in enumerate(node.value)]
        elif isinstance(node, yaml.MappingNode):
            children = _mapping_children(path, node, names)
        else:
            continue
        pending.extend(reversed(children))


def _mapping_children(
    path: Path, node: yaml.MappingNode, names: list[str]
) -> list[tuple[yaml.Node, list[str]]]:
    """The values of a mapping with their field paths; a key seen twice is an error."""
    seen: set[str] = set()
    children = []
    for key_node, value_node in node.value:
        key = str(key_node.value)
        if key in seen:
            field = ".".join([*names, key])
            raise SpecFileError(
                f"{path}, line {key_node.start_mark.line + 1}, field {field!r}: duplicate key."
            )
        seen.add(key)
        children.append((value_node, [*names, key]))
    return children


_TAG = "tag:yaml.org,2002:"
#: Bytes of JSON a scalar of these tags takes at least (true/false: 4 or 5, null: 4).
_FIXED_SIZES = {f"{_TAG}null": 4, f"{_TAG}bool": 4}


class _Cycle(Exception):
    """A node reachable from itself: expanded, the document would be infinite."""

    def __init__(self, node: yaml.Node) -> None:
        super().__init__()
        self.node = node


def _refuse_oversized(path: Path, root: yaml.Node, max_bytes: int) -> None:
    """Refuse a document that would be over ``max_bytes`` as JSON once expanded.

    Costs one visit per node whatever the aliases multiply, so a billion-laughs file is
    refused in milliseconds, before PyYAML builds (or ``<<`` merges copy) anything.
    """
    try:
        size, shared = _expanded_size(root)
    except _Cycle as cycle:
        raise SpecFileError(
            f"{path}, line {cycle.node.start_mark.line + 1}: an alias refers to a node that "
            "contains it: the document would be infinite."
        ) from None
    what = (
        f"{path}: with its aliases expanded, the deployment is"
        if shared
        else (f"{path}: the deployment is")
    )
    try:
        check_bytes(what, size, max_bytes, _LIMIT_VARIABLE, how="about")
    except InvalidInput as error:
        raise SpecFileError(str(error)) from None


def _expanded_size(root: yaml.Node) -> tuple[int, bool]:
    """The compact JSON bytes of the document with aliases and merges expanded (an
    estimate, close to what is stored), and whether any node is shared (an alias).

    Each node's size is computed once, after its children's (an explicit stack, no
    recursion); a merge key (``<<``) counts the pairs of the mappings it copies in, as
    PyYAML's constructor copies them.

    Raises:
        _Cycle: a node contains itself.
    """
    sizes: dict[int, int] = {}
    ancestors: set[int] = set()  # nodes whose size waits for their children's
    shared = False
    pending: list[tuple[yaml.Node, bool]] = [(root, False)]
    while pending:
        node, children_done = pending.pop()
        key = id(node)
        if children_done:
            sizes[key] = _collection_size(node, sizes)
            ancestors.discard(key)
            continue
        if key in sizes:
            shared = True
            continue
        if isinstance(node, yaml.ScalarNode):
            sizes[key] = _scalar_size(node)
            continue
        ancestors.add(key)
        pending.append((node, True))
        for child in _node_children(node):
            if id(child) in ancestors:
                raise _Cycle(child)
            pending.append((child, False))
    return sizes[id(root)], shared


def _node_children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return list(node.value)


def _scalar_size(node: yaml.ScalarNode) -> int:
    """Bytes of JSON the scalar becomes (a string: its UTF-8 and two quotes)."""
    tag = node.tag
    if tag in _FIXED_SIZES:
        return _FIXED_SIZES[tag]
    if tag == f"{_TAG}int":
        return len(node.value)
    if tag == f"{_TAG}float":
        return min(len(node.value), 24)  # as Python prints it
    if tag == f"{_TAG}binary":
        return len(node.value) * 3 // 4 + 2  # base64 text: the bytes, as a string
    return len(node.value.encode("utf-8", "surrogatepass")) + 2


def _collection_size(node: yaml.Node, sizes: dict[int, int]) -> int:
    """``[a,b]`` or ``{"k":v,...}`` from the children's sizes; merged mappings' pairs inline."""
    if isinstance(node, yaml.SequenceNode):
        return 2 + sum(sizes[id(item)] for item in node.value) + max(len(node.value) - 1, 0)
    total, parts, merged_ids = 2, 0, set()
    for key_node, value_node in node.value:
        if key_node.tag == f"{_TAG}merge":
            merged = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            for mapping in merged:
                if id(mapping) in merged_ids:
                    continue  # PyYAML merges the same mapping's pairs once
                merged_ids.add(id(mapping))
                total += max(sizes[id(mapping)] - 2, 0)
                parts += 1
        else:
            total += sizes[id(key_node)] + 1 + sizes[id(value_node)]
            parts += 1
    return total + max(parts - 1, 0)


#: Pydantic messages reworded for someone editing a YAML file.
_MESSAGES = {
    "extra_forbidden": "unknown field",
    "missing": "this field is required",
    "union_tag_not_found": "needs a 'type': process, docker or kubernetes",
}


def _problem(root: yaml.Node, error: dict[str, Any]) -> tuple[int, str]:
    """``(7, "field 'retries': Input should be ...")`` for one pydantic error."""
    location = list(error["loc"])
    if error["type"] == "union_tag_invalid":
        location.append("type")  # point at the infrastructure's `type:` line
    names, line = _locate(root, location)
    message = _MESSAGES.get(error["type"]) or error["msg"].removeprefix("Value error, ")
    where = f"field {'.'.join(names)!r}: " if names else ""
    return line, f"{where}{message.rstrip('.')}"


def _refusal(root: yaml.Node, location: list[str], why: str) -> tuple[int, str]:
    names, line = _locate(root, location)
    return line, f"field {'.'.join(names)!r}: {why}"


def _report(path: Path, problems: list[tuple[int, str]]) -> str:
    """One line: ``deploy.yaml, line 7, field 'retries': ...`` for one problem, else
    ``deploy.yaml: 3 problems: line 2, field 'a': unknown field; line 5, ...``."""
    problems = sorted(set(problems))
    if len(problems) == 1:
        line, text = problems[0]
        return f"{path}, line {line}{', ' if text.startswith('field ') else ': '}{text}."
    shown = "; ".join(f"line {line}, {text}" for line, text in problems[:MAX_PROBLEMS_SHOWN])
    more = len(problems) - MAX_PROBLEMS_SHOWN
    return f"{path}: {len(problems)} problems: {shown}{f'; and {more} more' if more > 0 else ''}."


def _locate(root: yaml.Node, location: Sequence[Any]) -> tuple[list[str], int]:
    """Follow a pydantic error location through the nodes: the field path and its line.

    Parts that are not in the document (a union's tag such as ``docker``, or a missing
    field) are skipped for the line, which stays on the closest enclosing node.
    """
    node, line, names = root, root.start_mark.line + 1, []
    for part in location:
        child = _child(node, part)
        if child is None:
            if not _is_union_tag(node, part):
                names.append(str(part))
            continue
        key_node, node = child
        names.append(str(part))
        line = key_node.start_mark.line + 1
    return names, line


def _child(node: yaml.Node, part: Any) -> tuple[yaml.Node, yaml.Node] | None:
    """The (key or item node, value node) for one step of a location, if present."""
    if isinstance(node, yaml.MappingNode) and isinstance(part, str):
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == part:
                return key_node, value_node
    if (
        isinstance(node, yaml.SequenceNode)
        and isinstance(part, int)
        and 0 <= part < len(node.value)
    ):
        item = node.value[part]
        return item, item
    return None


def _is_union_tag(node: yaml.Node, part: Any) -> bool:
    """True for the tag pydantic inserts for a discriminated union (``infrastructure.docker``)."""
    if not isinstance(node, yaml.MappingNode) or not isinstance(part, str):
        return False
    for key_node, value_node in node.value:
        if key_node.value == "type" and isinstance(value_node, yaml.ScalarNode):
            return bool(value_node.value == part)
    return False
