"""Request dependencies: the assembled control plane and the caller's context from X-Auth-Token."""

from __future__ import annotations

from dataclasses import replace

from fastapi import Request

from ferry.domain.errors import BadRequest, Forbidden, Unauthorized
from ferry.services.app import Ferry
from ferry.services.context import RequestContext


def ferry(request: Request) -> Ferry:
    app: Ferry = request.app.state.ferry
    return app


def context(request: Request) -> RequestContext:
    token = request.headers.get("X-Auth-Token")
    if not token:
        raise Unauthorized("The request you have made requires authentication.")
    ctx = ferry(request).identity.validate(token).context
    params = (*request.path_params.values(), *request.query_params.keys(), *request.query_params.values())
    if any("\x00" in str(v) for v in params):  # no id or name holds one, and PostgreSQL refuses them
        raise BadRequest("Invalid input: the URL must not contain NUL characters.")
    return ctx


def project_context(request: Request, project_id: str) -> RequestContext:
    """Context for `/…/{project_id}/…` URLs: the path must name the token's project (admins may
    act in any existing project)."""
    ctx = context(request)
    if project_id == ctx.project_id:
        return ctx
    if ctx.is_admin and ferry(request).identity.project_exists(project_id):
        return replace(ctx, project_id=project_id)
    raise Forbidden(f"Token is scoped to project {ctx.project_id}, not {project_id}.")
