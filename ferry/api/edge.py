"""What every HTTP request passes before routing: a request id, the size limits, HEAD, the last word
on unexpected errors.

- Every response carries `x-openstack-request-id` (as OpenStack services send it; the compute
  API's also Nova's `x-compute-request-id`, the key of its instance actions); a 500 names it
  instead of the exception's text, and the log has the traceback under it.
- A body over the limit is refused with 413 while it streams in (never buffered whole): a declared
  Content-Length up front, the bytes as they arrive otherwise. (The server bounds the headers as a
  whole; the microversion header has its own limit in `versions.py`.)
- HEAD is served by the GET route of the same path (Cinder and Nova answer HEAD where they answer
  GET), with the headers and without the body.

A pure ASGI middleware (BaseHTTPMiddleware would re-stream every response through a task and a
queue). It must not know any route or read any body itself.
"""

from __future__ import annotations

import logging
import uuid

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ferry.api.errors import error_response, serves, unexpected_message
from ferry.domain.errors import OverLimit

log = logging.getLogger(__name__)

REQUEST_ID = b"x-openstack-request-id"
COMPUTE_REQUEST_ID = b"x-compute-request-id"


class BodyTooLarge(OverLimit):
    """Raised from `receive` when a streamed body passes the limit (the route's error handler
    answers 413; `Edge` does if the body was read outside a route)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"Request body too large: the limit is {limit} bytes.")


DATA_TYPE = "application/octet-stream"
"""A body of this type is data (an image's bytes, streamed to disk by its route), not a document:
it has its own, larger limit."""


class Edge:
    def __init__(self, app: ASGIApp, max_body_bytes: int, max_data_bytes: int | None = None) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_data_bytes = max_data_bytes if max_data_bytes is not None else max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = f"req-{uuid.uuid4()}"
        scope.setdefault("state", {})["request_id"] = rid
        ids = [(REQUEST_ID, rid.encode())]
        if str(scope.get("path", "")).startswith("/compute/"):
            ids.append((COMPUTE_REQUEST_ID, rid.encode()))
        head = scope["method"] == "HEAD" and not serves(scope["app"], scope, "HEAD")
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message = {**message, "headers": [*message.get("headers", ()), *ids]}
            elif head and message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        headers = Headers(scope=scope)
        path = str(scope.get("path", ""))
        limit = self.max_body_bytes
        if headers.get("content-type", "").split(";")[0].strip().lower() == DATA_TYPE:
            limit = self.max_data_bytes
        refusal = self._refusal(headers, limit)
        if refusal is not None:
            await error_response(*refusal, path=path)(scope, receive, send_with_id)
            return
        try:
            await self.app(
                {**scope, "method": "GET"} if head else scope, self._counted(receive, limit), send_with_id
            )
        except BodyTooLarge as e:
            if started:
                raise
            await error_response(e.code, e.message, e.kind, path=path)(scope, receive, send_with_id)
        except Exception:
            log.exception("unexpected error (request %s)", rid)
            if not started:  # else the client sees the connection close: nothing more can be said
                await error_response(500, unexpected_message(rid), path=path)(scope, receive, send_with_id)

    def _refusal(self, headers: Headers, limit: int) -> tuple[int, str] | None:
        """(code, message) of a request refused on its headers alone, or None."""
        declared = headers.get("content-length")
        if declared is None:
            return None
        if not declared.isdigit() or len(declared) > 19:
            return 400, "Invalid Content-Length."
        if int(declared) > limit:
            return 413, f"Request body too large: the limit is {limit} bytes."
        return None

    def _counted(self, receive: Receive, limit: int) -> Receive:
        """`receive`, raising BodyTooLarge as soon as the body passes the limit."""
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        return counted
