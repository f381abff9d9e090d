"""`POST …/action` (Cinder volume actions, Nova server actions): the body's only key names the action,
its value the arguments; a table maps each name to its handler.

A handler answers None (202, no body), a JSON body (200), or a response of its own (Cinder's
`os-set_bootable`: 200 with no body). This module only dispatches: the
handlers parse their arguments and call services.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from ferry.api.errors import json_body
from ferry.domain.errors import BadRequest
from ferry.services.context import RequestContext

S = TypeVar("S")
ACTION_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {"description": "The action's answer (the actions that have one)"}
}
"""The action route's other success answer, for its OpenAPI `responses` (202 is the route's own)."""
Handler = Callable[[S, RequestContext, str, Any], Awaitable[dict[str, Any] | Response | None]]
"""(services, caller, resource id, the action's arguments) -> body, a whole answer, or None."""


async def perform(
    request: Request, kind: str, table: Mapping[str, Handler[S]], services: S, ctx: RequestContext, ident: str
) -> Response:
    """Run the one action of the request body on resource `ident`; `kind` names it in errors."""
    body = await json_body(request)
    if len(body) != 1:
        raise BadRequest(f"Invalid input: a {kind} action body holds exactly one action.")
    action, args = next(iter(body.items()))
    handler = table.get(action)
    if handler is None:
        raise BadRequest(f"Unknown {kind} action {action!r}; supported: {', '.join(table)}.")
    result = await handler(services, ctx, ident, args)
    if result is None:
        return Response(status_code=202)
    if isinstance(result, Response):  # an answer of its own (Cinder's 202 with a body)
        return result
    return JSONResponse(result, status_code=200)
