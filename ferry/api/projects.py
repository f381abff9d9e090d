"""Keystone v3 projects and domains at /identity/v3: list and show domains, list projects (by
`name`, `domain_id`), create, show, update and delete them. HTTP only: `ProjectService` decides."""

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


class ProjectUpdateBody(Body):
    name: str | None = Field(default=None, min_length=1, max_length=64)
    description: str | None = Field(default=None, max_length=255)
    enabled: StrictBool | None = None


def project_view(request: Request, p: ProjectRecord) -> dict[str, Any]:
    return {
        "id": p.id,
        "name": p.name,
        "domain_id": p.domain_id,
        "description": p.description,
        "enabled": p.enabled,
        "is_domain": False,
        "parent_id": p.domain_id,
        "tags": [],
        "links": {"self": f"{base_url(request)}/identity/v3/projects/{p.id}"},
    }


def _domain(request: Request, i: str, n: str) -> dict[str, Any]:
    base = f"{base_url(request)}/identity/v3/domains"
    return {
        "id": i,
        "name": n,
        "description": "",
        "enabled": True,
        "tags": [],
        "links": {"self": f"{base}/{i}"},
    }


@router.get("/domains/{domain_id}")
def show_domain(request: Request, domain_id: str, projects: ProjectService = Projects) -> dict[str, Any]:
    return {"domain": _domain(request, *projects.domain(deps.context(request), domain_id))}


@router.get("/domains")
def list_domains(
    request: Request, name: QueryText = None, projects: ProjectService = Projects
) -> dict[str, Any]:
    found = projects.domains(deps.context(request), name)
    base = f"{base_url(request)}/identity/v3/domains"
    return {
        "domains": [_domain(request, i, n) for i, n in found],
        "links": {"self": base, "next": None, "previous": None},
    }


@router.post("/projects", status_code=201, openapi_extra=body("project", ProjectCreateBody))
async def create_project(request: Request, projects: ProjectService = Projects) -> JSONResponse:
    ctx = deps.context(request)  # who asks, before what is asked
    b = await body_part(request, "project", ProjectCreateBody)
    p = projects.create(ctx, b.name, b.domain_id, b.description, b.enabled)
    return JSONResponse({"project": project_view(request, p)}, status_code=201)


@router.get("/projects")
def list_projects(
    request: Request,
    name: QueryText = None,
    domain_id: QueryText = None,
    enabled: QueryText = None,
    projects: ProjectService = Projects,
) -> dict[str, Any]:
    flag = None if enabled is None else enabled.lower() not in ("0", "false", "no", "off")
    found = projects.find(deps.context(request), name, domain_id, flag)
    links = {"self": f"{base_url(request)}/identity/v3/projects", "previous": None, "next": None}
    return {"projects": [project_view(request, p) for p in found], "links": links}


@router.get("/projects/{project}")
def show_project(request: Request, project: str, projects: ProjectService = Projects) -> dict[str, Any]:
    return {"project": project_view(request, projects.get(deps.context(request), project))}


@router.patch("/projects/{project}", openapi_extra=body("project", ProjectUpdateBody))
async def update_project(
    request: Request, project: str, projects: ProjectService = Projects
) -> dict[str, Any]:
    ctx = deps.context(request)
    b = await body_part(request, "project", ProjectUpdateBody)
    p = projects.update(ctx, project, b.name, b.description, b.enabled)
    return {"project": project_view(request, p)}


@router.delete("/projects/{project}", status_code=204)
def delete_project(request: Request, project: str, projects: ProjectService = Projects) -> Response:
    projects.delete(deps.context(request), project)
    return Response(status_code=204)
