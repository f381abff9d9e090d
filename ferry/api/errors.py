"""The one place where errors become OpenStack-shaped bodies (`{"badRequest": {"code": 400, ...}}`,
Keystone's `{"error": {...}}` under /identity), and where a request body is read and checked
(`json_body`)."""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match
from starlette.types import Scope

from ferry.api.responses import JSONBody
from ferry.api.schemas import INT64_MAX, INT64_MIN, text_problem
from ferry.domain.errors import BadRequest, FerryError, OverLimit, TooManyRequests

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
    503: "serviceUnavailable",
}


def error_response(
    code: int,
    message: str,
    kind: str | None = None,
    headers: dict[str, str] | None = None,
    path: str = "",
) -> JSONBody:
    """The error body for a request to `path`: Keystone's `{"error": {"code", "message",
    "title"}}` under /identity, Cinder's and Nova's `{kind: {"code", "message"}}` elsewhere."""
    if code == 401:
        headers = {**(headers or {}), "WWW-Authenticate": 'Keystone uri="/identity/v3"'}
    if path == "/identity" or path.startswith("/identity/"):
        body = {"error": {"code": code, "message": message, "title": _title(code)}}
        return JSONBody(body, status_code=code, headers=headers)
    kind = kind or KIND_BY_CODE.get(code, "computeFault")
    return JSONBody({kind: {"code": code, "message": message}}, status_code=code, headers=headers)


def _title(code: int) -> str:
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return "Error"


def unexpected_message(request_id: str) -> str:
    """A 500's message: never the exception's text (it may hold SQL or paths), only the request id
    under which the log has it."""
    return f"An unexpected error occurred; the server log has the details under request {request_id}."


def request_id(request: Request) -> str:
    return str(request.scope.get("state", {}).get("request_id", "req-unknown"))


def _validation_message(errors: list[Any]) -> str:
    parts = []
    for e in errors[:5]:
        loc = ".".join(str(p) for p in e.get("loc", ()) if p not in ("body", "query", "path"))
        parts.append(f"{loc or 'request'}: {e.get('msg', 'invalid')}")
    return "Invalid input: " + "; ".join(parts)


METHODS = ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")


def serves(app: Any, scope: Scope, method: str) -> bool:
    """Whether a route of `app` answers `method` at the scope's path. (Asked of the routes, which
    FastAPI nests per included router, rather than read from them.)"""
    probe = {**scope, "method": method}
    return any(r.matches(probe)[0] is Match.FULL for r in app.router.routes if isinstance(r, BaseRoute))


def allowed_methods(request: Request) -> str:
    """The `Allow` header of a 405: every method served at this path (HEAD wherever GET is)."""
    methods = {m for m in METHODS if serves(request.app, request.scope, m)}
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods))


def install(app: FastAPI) -> None:
    @app.exception_handler(FerryError)
    async def ferry_error(request: Request, exc: FerryError) -> JSONBody:
        if exc.code == 503:  # a host or the database is away: the caller's news, not a bug
            log.warning("request %s: %s", request_id(request), exc.message)
            return error_response(503, exc.message, exc.kind, {"Retry-After": "5"}, request.url.path)
        if exc.code >= 500:
            rid = request_id(request)
            log.error("request failed (%s): %s", rid, exc.message, exc_info=exc)
            return error_response(exc.code, unexpected_message(rid), exc.kind, path=request.url.path)
        if isinstance(exc, OverLimit):  # a quota: Cinder's QuotaError answers "retry at once"
            body = {exc.kind: {"code": exc.code, "message": exc.message, "retryAfter": "0"}}
            return JSONBody(body, status_code=exc.code, headers={"Retry-After": "0"})
        resp = error_response(exc.code, exc.message, exc.kind, path=request.url.path)
        if isinstance(exc, TooManyRequests):
            resp.headers["Retry-After"] = str(exc.retry_after_s)
        return resp

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    async def database_away(request: Request, exc: Exception) -> JSONBody:
        """PostgreSQL restarting or out of reach: the pool reconnects on the next request."""
        log.warning("request %s: the database is unavailable: %s", request_id(request), type(exc).__name__)
        message = "The database is unavailable; retry shortly."
        return error_response(503, message, "serviceUnavailable", {"Retry-After": "2"}, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONBody:
        return error_response(400, _validation_message(list(exc.errors())), path=request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONBody:
        path = request.url.path
        if exc.status_code == 404:
            return error_response(404, "The resource could not be found.", path=path)
        if exc.status_code == 405:
            allow = allowed_methods(request)
            message = f"{request.method} is not allowed here; allowed: {allow}."
            return error_response(405, message, headers={"Allow": allow}, path=path)
        return error_response(exc.status_code, str(exc.detail), path=path)


async def json_body(request: Request) -> dict[str, Any]:
    """The request body as a JSON object, or BadRequest. Every key and string meets
    `text_problem` and every integer fits in 64 bits, else the error names where it is. (Its size
    is bounded by `edge.Edge` while it streams in.)"""
    raw = await request.body()
    try:
        body = json.loads(raw or b"null", parse_int=_integer)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadRequest(f"Malformed request body: {e}") from None
    except RecursionError:
        raise BadRequest("Malformed request body: nested too deeply.") from None
    if not isinstance(body, dict):
        raise BadRequest("Malformed request body: expected a JSON object.")
    problem = _unfit(body)
    if problem:
        raise BadRequest(f"Invalid input: {problem}.")
    return body


class _Oversized(int):
    """An integer literal too long to convert (Python refuses over 4,300 digits, and nothing Ferry
    stores has more than 19): kept as a marker so that `_unfit` names where it is."""


def _integer(literal: str) -> int:
    return _Oversized(0) if len(literal) > 20 else int(literal)


def _unfit(body: dict[str, Any]) -> str | None:
    """Where and why the first unfit value of a parsed JSON document is, or None."""
    stack: list[tuple[str, Any]] = [("", body)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, str):
            problem = text_problem(value)
            if problem:
                return f"{where or 'body'}: {problem}"
        elif isinstance(value, bool):
            continue
        elif isinstance(value, int):
            if isinstance(value, _Oversized) or not INT64_MIN <= value <= INT64_MAX:
                return f"{where}: integers must fit in 64 bits"
        elif isinstance(value, dict):
            for key, item in value.items():
                inner = f"{where}.{key}" if where else key
                problem = text_problem(key)
                if problem:
                    return f"a key in {where or 'body'}: {problem}"
                stack.append((inner, item))
        elif isinstance(value, list):
            stack.extend((f"{where}[{i}]", item) for i, item in enumerate(value))
    return None


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
