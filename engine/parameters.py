"""A flow's parameters: checking a run's against the function, describing them as JSON schema.

The engine binds and validates a run's parameters before it calls the flow
(:func:`bind_parameters`); the deployment check derives the function's parameter schema
(:func:`parameter_schema`) in its child process, and the broker checks every run's
parameters against that schema before the run exists. Both read the same signature and
type hints through pydantic, so what the schema admits the call accepts.
"""

from __future__ import annotations

import inspect
import typing
import warnings
from collections.abc import Callable
from typing import Any, Literal

from .loading import FlowLoadError


def bind_parameters(function: Callable[..., Any], parameters: dict[str, Any]) -> Callable[[], Any]:
    """Validate the parameters against the function's signature and type hints (pydantic)."""
    from pydantic import ValidationError, validate_call

    try:
        inspect.signature(function).bind(**parameters)
    except TypeError as error:
        raise FlowLoadError(f"parameters do not fit {function.__name__}(): {error}") from None
    validated = validate_call(function)

    def call() -> Any:
        try:
            return validated(**parameters)
        except ValidationError as error:
            raise FlowLoadError(f"invalid parameters: {error}") from None

    return call


def parameter_schema(function: Callable[..., Any]) -> dict[str, Any]:
    """The JSON schema of ``function``'s keyword-passable parameters (pydantic).

    A model is built from ``inspect.signature`` with ``create_model``: each parameter its
    annotation (``Any`` when missing or when pydantic has no schema for it) and default.
    ``**kwargs`` allows other parameters; positional-only and ``*args`` ones cannot be
    passed by name, so they are not parameters of a run. Fields get safe names and the
    parameter as alias (``_x``, ``json`` or ``model_config`` are valid parameter names).
    """
    from pydantic import ConfigDict, Field, create_model

    signature = inspect.signature(function)
    try:
        hints = typing.get_type_hints(function)
    except Exception:  # an unresolvable forward reference: the raw annotations
        hints = {}
    fields: dict[str, Any] = {}
    extra: Literal["allow", "forbid"] = "forbid"
    for index, parameter in enumerate(signature.parameters.values()):
        if parameter.kind is parameter.VAR_KEYWORD:
            extra = "allow"
        if parameter.kind in (
            parameter.VAR_KEYWORD,
            parameter.VAR_POSITIONAL,
            parameter.POSITIONAL_ONLY,
        ):
            continue
        annotation = _describable(hints.get(parameter.name, parameter.annotation))
        default = ... if parameter.default is parameter.empty else parameter.default
        fields[f"p{index}"] = (annotation, Field(default, alias=parameter.name))
    title = getattr(function, "__name__", "parameters")
    model = create_model(title, __config__=ConfigDict(extra=extra), **fields)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a default with no JSON form is left out, as pydantic does
        schema: dict[str, Any] = model.model_json_schema(by_alias=True)
    return schema


def _describable(annotation: Any) -> Any:
    """The annotation if pydantic can describe it as JSON schema, else ``Any``."""
    from pydantic import TypeAdapter

    if annotation is inspect.Parameter.empty:
        return Any
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            TypeAdapter(annotation).json_schema()
    except Exception:
        return Any
    return annotation
