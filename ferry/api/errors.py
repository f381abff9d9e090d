"""The one place where errors become OpenStack-shaped bodies: `{"badRequest": {"code": 400, ...}}`."""

from __future__ import annotations

import json
import logging
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ferry.domain.errors import BadRequest, FerryError, TooManyRequests

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)

KIND_BY_CODE = {
    400: "badRequest",
    401: "unauthorized",
    403: "forbidden",
    404: "itemNotFound",
    405: "badMethod",
    406: "notAcceptable",
    409: "conflictingRequest",
    413: "overLimit",
    429: "overLimit",
    415: "badMediaType",
}


def error_response(code: int, message: str, kind: str | None = None) -> JSONResponse:
    kind = kind or KIND_BY_CODE.get(code, "computeFault")
    headers = {"WWW-Authenticate": 'Keystone uri="/identity/v3"'} if code == 401 else None
    return JSONResponse({kind: {"code": code, "message": message}}, status_code=code, headers=headers)


def _validation_message(errors: list[Any]) -> str:
    parts = []
    for e in errors[:5]:
        loc = ".".join(str(p) for p in e.get("loc", ()) if p not in ("body", "query", "path"))
        parts.append(f"{loc or 'request'}: {e.get('msg', 'invalid')}")
    return "Invalid input: " + "; ".join(parts)


def install(app: FastAPI) -> None:
    @app.exception_handler(FerryError)
    async def ferry_error(_: Request, exc: FerryError) -> JSONResponse:
        if exc.code >= 500:
            log.error("request failed: %s", exc.message)
        resp = error_response(exc.code, exc.message, exc.kind)
        if isinstance(exc, TooManyRequests):
            resp.headers["Retry-After"] = str(exc.retry_after_s)
        return resp

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(400, _validation_message(list(exc.errors())))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        msg = "The resource could not be found." if exc.status_code == 404 else str(exc.detail)
        return error_response(exc.status_code, msg)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return error_response(500, f"Unexpected error: {type(exc).__name__}: {exc}")


async def json_body(request: Request) -> dict[str, Any]:
    """The request body as a JSON object, or BadRequest."""
    raw = await request.body()
    if len(raw) > 1_048_576:
        raise BadRequest("Request body too large.")
    try:
        body = json.loads(raw or b"null")
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadRequest(f"Malformed request body: {e}") from None
    except RecursionError:
        raise BadRequest("Malformed request body: nested too deeply.") from None
    if not isinstance(body, dict):
        raise BadRequest("Malformed request body: expected a JSON object.")
    if b"\\u0000" in raw and _has_nul(body):
        raise BadRequest("Invalid input: strings must not contain NUL characters.")
    return body


def _has_nul(body: Any) -> bool:
    """Whether any key or string in a parsed JSON document holds a NUL (PostgreSQL refuses them)."""
    stack = [body]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                return True
        elif isinstance(value, dict):
            stack.extend(value)
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return False


def parse(model: type[M], data: Any, where: str) -> M:
    if not isinstance(data, dict):
        raise BadRequest(f"Invalid input: '{where}' must be an object.")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise BadRequest(
            _validation_message([{**err, "loc": (where, *err["loc"])} for err in e.errors()])
        ) from None


async def body_part(request: Request, key: str, model: type[M]) -> M:
    body = await json_body(request)
    if key not in body:
        raise BadRequest(f"Invalid input: missing '{key}' in request body.")
    return parse(model, body[key], key)
