"""Keystone's projects, read only: what clients ask to resolve a project given by name or id
(`openstack volume type set --project P`). Admins see every project; others their own."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ferry.db.models import Project
from ferry.domain.errors import NotFound
from ferry.services import policy
from ferry.services.context import RequestContext


class ProjectDirectory:
    def __init__(self, db: sessionmaker[Session]) -> None:
        self.db = db

    def get(self, ctx: RequestContext, project_id: str) -> Project:
        with self.db() as s:
            project = s.get(Project, project_id)
            if project is None or not (
                policy.allowed(ctx, "project:get_any") or project.id == ctx.project_id
            ):
                raise NotFound(f"Could not find project: {project_id}.")
            return project

    def find(self, ctx: RequestContext, name: str | None, domain_id: str | None) -> list[Project]:
        with self.db() as s:
            stmt = select(Project).order_by(Project.name)
            if name is not None:
                stmt = stmt.where(Project.name == name)
            if domain_id is not None:
                stmt = stmt.where(Project.domain_id == domain_id)
            if not policy.allowed(ctx, "project:get_any"):
                stmt = stmt.where(Project.id == ctx.project_id)
            return list(s.scalars(stmt))
