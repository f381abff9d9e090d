"""What `/openapi.json` declares beyond FastAPI's own reading of the routes: the request bodies
(routers read them with `errors.json_body`, so FastAPI sees none) and the status codes.

Routers declare their bodies with `body(...)` or `actions(...)` (`openapi_extra=`); `install`
gives every operation the error answers any request may get (400, 401, 403, 404, 409, 413; 406 on
the microversioned APIs) and drops FastAPI's 422, which Ferry never answers (a validation error is
a 400, as in Cinder and Nova). This module only documents: it must not change what a route does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, TypeAdapter

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": 'OpenStack\'s error body, e.g. {"badRequest": {"code": 400, "message": "..."}}',
    "minProperties": 1,
    "maxProperties": 1,
    "additionalProperties": {
        "type": "object",
        "required": ["code", "message"],
        "properties": {"code": {"type": "integer"}, "message": {"type": "string"}},
    },
}
ERRORS = {
    400: "Invalid input: malformed body, wrong types, text or numbers out of range",
    401: "No token, or an invalid or expired one",
    403: "The caller may not do this, or the URL names another project",
    404: "No such resource (or not visible to the caller)",
    409: "The resource's state does not allow it now",
    413: "Request body over the configured limit",
}
MICROVERSIONED = ("/volume/v3/", "/compute/v2.1/")


def error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ERROR_SCHEMA}}}


Shape = type[BaseModel] | Any
"""A body model, a type (`schemas.Pairs`) or a JSON schema as a dict."""


def schema_of(shape: Shape) -> dict[str, Any]:
    """The JSON schema of `shape`, inline (Ferry's body models are flat: no `$defs` to place)."""
    if isinstance(shape, dict):
        return shape
    schema: dict[str, Any] = TypeAdapter(shape).json_schema()
    assert "$defs" not in schema, f"{shape}: nested models need components"
    return schema


def _request(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def wrapped(key: str, schema: dict[str, Any]) -> dict[str, Any]:
    """`{key: schema}`, the shape of every OpenStack request body."""
    return {"type": "object", "required": [key], "properties": {key: schema}}


def body(key: str, shape: Shape) -> dict[str, Any]:
    """`openapi_extra` of a route whose body is `{key: shape}`."""
    return _request(wrapped(key, schema_of(shape)))


def flat(shape: Shape) -> dict[str, Any]:
    """`openapi_extra` of a route whose body is `shape` itself, unwrapped (Nova's os-services)."""
    return _request(schema_of(shape))


def actions(table: Mapping[str, Shape]) -> dict[str, Any]:
    """`openapi_extra` of a `POST …/action` route: exactly one of the actions, each with its arguments."""
    choices = [{**wrapped(name, schema_of(args)), "maxProperties": 1} for name, args in table.items()]
    return _request({"oneOf": choices})


ANY: dict[str, Any] = {}
"""The arguments of an action that takes none (its value is ignored, as in Cinder and Nova)."""


def install(app: FastAPI) -> None:
    """Serve the document with every operation's error answers, built once."""

    def document() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            for path, operations in spec.get("paths", {}).items():
                for operation in operations.values():
                    _declare_errors(path, operation["responses"])
            for unused in ("HTTPValidationError", "ValidationError"):  # FastAPI's 422 body
                spec.get("components", {}).get("schemas", {}).pop(unused, None)
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = document  # type: ignore[method-assign]


def _declare_errors(path: str, responses: dict[str, Any]) -> None:
    responses.pop("422", None)
    for code, description in ERRORS.items():
        responses.setdefault(str(code), error(description))
    if path.startswith(MICROVERSIONED):
        responses.setdefault("406", error("The requested microversion is not supported"))
