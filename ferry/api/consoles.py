"""A server's console at /compute/v2.1: Nova's `os-getConsoleOutput` action (dispatched from the
server action table in `compute.py`) and Ferry's `ferry-console` extension for following the log.

HTTP only: parse, call `ComputeService`, render.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Depends

from ferry.api import deps
from ferry.api.schemas import Count
from ferry.domain.errors import BadRequest
from ferry.services.compute import ComputeService
from ferry.services.context import RequestContext

router = APIRouter(prefix="/compute/v2.1")
CONSOLE_LENGTH = re.compile(r"-?[0-9]{1,18}")
NOT_PRINTABLE = re.compile("[\x00-\x08\x0b-\x1f]")
"""Control characters Nova strips from os-getConsoleOutput (tab and newline stay)."""
CONSOLE_ARGUMENTS = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "length": {"anyOf": [{"type": "integer", "minimum": -1}, {"type": "null"}, {"type": "string"}]}
    },
}
"""os-getConsoleOutput's arguments, for the OpenAPI (`console_length` checks them)."""


def console_length(args: object) -> int | None:
    """os-getConsoleOutput's `length` as Nova accepts it: an integer or a numeric string; -1,
    null or no length mean the whole log."""
    if not isinstance(args, dict) or set(args) - {"length"}:
        raise BadRequest("Invalid input: os-getConsoleOutput takes an object with an optional length.")
    length = args.get("length")
    if isinstance(length, str) and CONSOLE_LENGTH.fullmatch(length):
        length = int(length)
    if length is None:
        return None
    if isinstance(length, bool) or not isinstance(length, int) or length < -1:
        raise BadRequest("Invalid input: os-getConsoleOutput.length must be an integer of -1 or more.")
    return None if length == -1 else length


async def console_output(
    compute: ComputeService, ctx: RequestContext, server_id: str, args: Any
) -> dict[str, Any]:
    """Nova's os-getConsoleOutput action: 200 {"output": the last `length` lines}."""
    output = await compute.console_output(ctx, server_id, console_length(args))
    return {"output": NOT_PRINTABLE.sub("", output)}


@router.get("/servers/{server_id}/ferry-console")
async def follow_console(
    server_id: str,
    offset: Count = 0,
    limit: Count = 65536,
    ctx: RequestContext = Depends(deps.context),
    compute: ComputeService = Depends(deps.compute),
) -> dict[str, Any]:
    """Ferry's extension for following a console: the log from byte `offset` (UTF-8, invalid
    bytes replaced) and the `offset` to ask for next."""
    data, after = await compute.console_read(ctx, server_id, offset, limit)
    return {"output": data.decode(errors="replace"), "offset": after}
