"""Reading the config schema at a value: the markers the code fills (``x-registry: layouts``),
the properties an object has once its conditional branches apply (a source's type, a local
source's layout), and the defaults filled in at every depth.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any


def fill_layouts(node: Any) -> Any:
    """``node`` with each ``x-registry: layouts`` marker replaced by the layouts' fragment."""
    if isinstance(node, dict):
        out = {k: fill_layouts(v) for k, v in node.items()}
        if out.get("x-registry") == "layouts":
            from deepfake_lth.data.acquire.layout import layouts_schema

            del out["x-registry"]
            out.update(layouts_schema())
        return out
    if isinstance(node, list):
        return [fill_layouts(v) for v in node]
    return node


def _branch_matches(branch: Mapping[str, Any], value: Any) -> bool:
    import jsonschema

    return jsonschema.Draft202012Validator(branch["if"]).is_valid(value)


def properties_at(schema: Mapping[str, Any], value: Any) -> dict[str, Any]:
    """The properties ``schema`` gives an object ``value``: its own and those of every
    ``allOf`` branch that applies to it (an ``if`` that ``value`` meets: its ``then``)."""
    props = dict(schema.get("properties") or {})
    for branch in schema.get("allOf") or []:
        if "if" not in branch:
            props.update(properties_at(branch, value))
        elif _branch_matches(branch, value):
            props.update(properties_at(branch.get("then") or {}, value))
    return props


def fill_defaults(value: Any, schema: Mapping[str, Any]) -> Any:
    """``value`` with the schema's defaults filled in where keys are absent, at every depth
    (the branches of a source's type and layout included), in place; returns it."""
    if not isinstance(schema, Mapping):
        return value
    if isinstance(value, dict):
        props = properties_at(schema, value)
        for key, prop in props.items():
            if key not in value and isinstance(prop, Mapping) and "default" in prop:
                value[key] = copy.deepcopy(prop["default"])
        props = properties_at(schema, value)  # a default may choose a branch (layout)
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            sub = props.get(key, extra if isinstance(extra, Mapping) else None)
            if sub is not None:
                fill_defaults(item, sub)
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for item in value:
            fill_defaults(item, schema["items"])
    return value
