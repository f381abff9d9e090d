"""Keystone v3 projects and domains at /identity/v3: list domains (by name), list (by `name`,
`domain_id`), create, show and delete projects. HTTP only: `ProjectService` decides."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import Field, StrictBool

from ferry.api import deps
from ferry.api.errors import body_part
from ferry.api.openapi import body
from ferry.api.schemas import Body, QueryText
from ferry.api.versions import base_url
from ferry.services.projects import ProjectRecord, ProjectService

router = APIRouter(prefix="/identity/v3")
Projects = Depends(deps.projects)


class ProjectCreateBody(Body):
    name: str = Field(min_length=1, max_length=64)
    description: str | None = Field(default=None, max_length=255)
    domain_id: str | None = Field(default=None, max_length=64)
    enabled: StrictBool = True
    is_domain: StrictBool = False


def _project(request: Request, p: ProjectRecord, description: str | None = None) -> dict[str, Any]:
    return {
        "id": p.id,
        "name": p.name,
        "domain_id": p.domain_id,
        "description": description or "",
        "enabled": True,
        "is_domain": False,
        "parent_id": p.domain_id,
        "tags": [],
        "links": {"self": f"{base_url(request)}/identity/v3/projects/{p.id}"},
    }


@router.get("/domains")
def list_domains(
    request: Request, name: QueryText = None, projects: ProjectService = Projects
) -> dict[str, Any]:
    found = projects.domains(deps.context(request), name)
    base = f"{base_url(request)}/identity/v3/domains"
    return {
        "domains": [
            {
                "id": i,
                "name": n,
                "description": "",
                "enabled": True,
                "tags": [],
                "links": {"self": f"{base}/{i}"},
            }
            for i, n in found
        ],
        "links": {"self": base, "next": None, "previous": None},
    }


@router.post("/projects", status_code=201, openapi_extra=body("project", ProjectCreateBody))
async def create_project(request: Request, projects: ProjectService = Projects) -> JSONResponse:
    ctx = deps.context(request)  # who asks, before what is asked
    b = await body_part(request, "project", ProjectCreateBody)
    p = projects.create(ctx, b.name, b.domain_id)
    return JSONResponse({"project": _project(request, p, b.description)}, status_code=201)


@router.get("/projects")
def list_projects(
    request: Request, name: QueryText = None, domain_id: QueryText = None, projects: ProjectService = Projects
) -> dict[str, Any]:
    found = projects.find(deps.context(request), name, domain_id)
    links = {"self": f"{base_url(request)}/identity/v3/projects", "previous": None, "next": None}
    return {"projects": [_project(request, p) for p in found], "links": links}


@router.get("/projects/{project}")
def show_project(request: Request, project: str, projects: ProjectService = Projects) -> dict[str, Any]:
    return {"project": _project(request, projects.get(deps.context(request), project))}


@router.delete("/projects/{project}", status_code=204)
def delete_project(request: Request, project: str, projects: ProjectService = Projects) -> Response:
    projects.delete(deps.context(request), project)
    return Response(status_code=204)
