"""OpenRPC 1.3 documents for typed methods, with JSON Schema from pydantic."""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

from pydantic import TypeAdapter

from ._method import MethodSpec, result_adapter

__all__ = ["OPENRPC_VERSION", "document"]

OPENRPC_VERSION = "1.3.2"


def _refs(node: Any) -> Iterable[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def document(entries: Iterable[MethodSpec], *, title: str, version: str) -> dict[str, Any]:
    """The OpenRPC document describing ``entries``: params by name, models in components."""
    entries = sorted(entries, key=lambda e: e.name)
    inputs: list[tuple[Any, Any, TypeAdapter[Any]]] = []
    for entry in entries:
        inputs.append((("params", entry.name), "validation", TypeAdapter(entry.params_type)))
        if not entry.notification:
            inputs.append(
                (("result", entry.name), "serialization", result_adapter(entry.params_type))
            )
    schemas, definitions = TypeAdapter.json_schemas(
        inputs, ref_template="#/components/schemas/{model}"
    )
    components: dict[str, Any] = definitions.get("$defs", {})
    # Models that some schema refers to must stay in the components.
    referenced = {
        ref.rsplit("/", 1)[1]
        for ref in _refs(
            [components, *(s for (key, _), s in schemas.items() if key[0] == "result")]
        )
    }
    methods = []
    for entry in entries:
        params_schema = schemas[(("params", entry.name), "validation")]
        if "$ref" in params_schema:  # params are listed one by one, not as a component
            name = params_schema["$ref"].rsplit("/", 1)[1]
            params_schema = components[name]
            if name not in referenced:
                del components[name]
        required = set(params_schema.get("required", ()))
        method: dict[str, Any] = {
            "name": entry.name,
            "paramStructure": "by-name",
            "params": [
                {"name": name, "required": name in required, "schema": schema}
                for name, schema in params_schema.get("properties", {}).items()
            ],
        }
        # The model's own docstring only: getdoc() would fall back to Method's.
        doc = inspect.getdoc(entry.handler) or inspect.cleandoc(
            entry.params_type.__dict__.get("__doc__") or ""
        )
        if doc:
            method["summary"] = doc.splitlines()[0]
            method["description"] = doc
        if not entry.notification:
            method["result"] = {
                "name": "result",
                "schema": schemas[(("result", entry.name), "serialization")],
            }
        methods.append(method)
    result: dict[str, Any] = {
        "openrpc": OPENRPC_VERSION,
        "info": {"title": title, "version": version},
        "methods": methods,
    }
    if components:
        result["components"] = {"schemas": components}
    return result
