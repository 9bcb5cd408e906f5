"""Reading a deployment YAML file, with errors that name the field and its line.

PyYAML builds a node tree that remembers where each key and value starts; pydantic names
the failing field by its path (``infrastructure.image``). Walking that path through the
nodes gives the line to report, so an operator can go straight to the mistake.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import yaml
from pydantic import ValidationError

from broker import DeploymentSpec, InvalidInput


class SpecFileError(InvalidInput):
    """A deployment file that cannot be used; the message names file, line and field."""


def load_deployment_spec(path: Path) -> DeploymentSpec:
    """Parse and validate ``path`` as one deployment, before anything is written.

    Raises:
        SpecFileError: unreadable file, bad YAML, or a field that fails validation.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise SpecFileError(f"Cannot read {path}: {error}.") from None
    root, data = _parse(path, text)
    if not isinstance(data, dict):
        line = root.start_mark.line + 1 if root is not None else 1
        raise SpecFileError(
            f"{path}, line {line}: a deployment file must be a mapping of fields "
            "(name, entrypoint, ...)."
        )
    try:
        return DeploymentSpec.model_validate(data)
    except ValidationError as error:
        raise SpecFileError(_describe(path, root, error.errors()[0])) from None


def _parse(path: Path, text: str) -> tuple[yaml.Node | None, Any]:
    """The document's node tree (for line numbers) and its value, from a single parse."""
    loader = None
    try:
        loader = yaml.SafeLoader(text)  # refuses control characters at once (ReaderError)
        root = loader.get_single_node()
        if root is not None:
            _refuse_duplicate_keys(path, root)  # before construction flattens `<<` merges
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


#: Pydantic messages reworded for someone editing a YAML file.
_MESSAGES = {
    "extra_forbidden": "unknown field",
    "missing": "this field is required",
    "union_tag_not_found": "needs a 'type': process, docker or kubernetes",
}


def _describe(path: Path, root: yaml.Node, error: dict[str, Any]) -> str:
    """``deploy.yaml, line 7, field 'retries': Input should be ...`` for one pydantic error."""
    location = list(error["loc"])
    if error["type"] == "union_tag_invalid":
        location.append("type")  # point at the infrastructure's `type:` line
    names, line = _locate(root, location)
    message = _MESSAGES.get(error["type"]) or error["msg"].removeprefix("Value error, ")
    where = f", field {'.'.join(names)!r}" if names else ""
    return f"{path}, line {line}{where}: {message.rstrip('.')}."


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
            return value_node.value == part
    return False
