"""Keystone's projects and domains, as far as OpenStack's tools need them: the one domain
(`default`), and projects an admin creates and deletes (tempest makes throw-away projects).

Deleting a project removes its role assignments, tokens and application credentials (their
foreign keys cascade) and its quota limits. A project that still owns volumes, snapshots or
servers is not deleted (409 naming them): Keystone would, and orphan them in Cinder and Nova.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from ferry.db.models import Project, QuotaLimit, Server, Snapshot, Token, Volume
from ferry.domain.errors import BadRequest, Conflict, NotFound
from ferry.domain.ids import new_id
from ferry.domain.servers import ServerStatus
from ferry.services import policy
from ferry.services.context import RequestContext

DEFAULT_DOMAIN_ID, DEFAULT_DOMAIN_NAME = "default", "Default"
MAX_NAME = 64
"""Keystone's limit on a project name."""


@dataclass(frozen=True)
class ProjectRecord:
    id: str
    name: str
    domain_id: str
    description: str = ""
    enabled: bool = True


def project_record(p: Project) -> ProjectRecord:
    return ProjectRecord(p.id, p.name, p.domain_id, p.description or "", p.enabled)


_record = project_record


class ProjectService:
    def __init__(self, db: sessionmaker[Session]) -> None:
        self.db = db

    def domains(self, ctx: RequestContext, name: str | None = None) -> list[tuple[str, str]]:
        """(id, name) of the domains, filtered by name: Ferry has one."""
        policy.enforce(ctx, "identity:list_domains")
        return [] if name not in (None, DEFAULT_DOMAIN_NAME) else [(DEFAULT_DOMAIN_ID, DEFAULT_DOMAIN_NAME)]

    def domain(self, ctx: RequestContext, domain_id: str) -> tuple[str, str]:
        policy.enforce(ctx, "identity:get_domain")
        if domain_id != DEFAULT_DOMAIN_ID:
            raise NotFound(f"Could not find domain: {domain_id}.")
        return DEFAULT_DOMAIN_ID, DEFAULT_DOMAIN_NAME

    def create(
        self,
        ctx: RequestContext,
        name: str,
        domain_id: str | None,
        description: str | None = None,
        enabled: bool = True,
    ) -> ProjectRecord:
        policy.enforce(ctx, "identity:create_project")
        if not 1 <= len(name) <= MAX_NAME:
            raise BadRequest(f"Invalid input: a project name must be 1 to {MAX_NAME} characters.")
        if domain_id not in (None, DEFAULT_DOMAIN_ID):
            raise BadRequest(f"Domain {domain_id} does not exist (Ferry has the one domain 'default').")
        project = Project(
            id=new_id().replace("-", ""),
            name=name,
            domain_id=DEFAULT_DOMAIN_ID,
            description=description,
            enabled=enabled,
        )
        try:
            with self.db.begin() as s:
                s.add(project)
        except IntegrityError:
            raise Conflict(f"A project named {name!r} already exists.") from None
        return _record(project)

    def delete(self, ctx: RequestContext, project_id: str) -> None:
        policy.enforce(ctx, "identity:delete_project")
        with self.db.begin() as s:
            if s.get(Project, project_id) is None:
                raise NotFound(f"Could not find project: {project_id}.")
            owned = _owned(s, project_id)
            if owned:
                raise Conflict(
                    f"Project {project_id} still owns {owned}: delete them first "
                    "(Ferry does not orphan a project's resources)."
                )
            s.execute(
                delete(QuotaLimit).where(QuotaLimit.is_class.is_(False), QuotaLimit.scope == project_id)
            )
            s.execute(delete(Project).where(Project.id == project_id))

    def update(
        self,
        ctx: RequestContext,
        project_id: str,
        name: str | None,
        description: str | None,
        enabled: bool | None,
    ) -> ProjectRecord:
        policy.enforce(ctx, "identity:update_project")
        try:
            with self.db.begin() as s:
                project = s.get(Project, project_id)
                if project is None:
                    raise NotFound(f"Could not find project: {project_id}.")
                if name is not None:
                    if not 1 <= len(name) <= MAX_NAME:
                        raise BadRequest(f"Invalid input: a project name must be 1 to {MAX_NAME} characters.")
                    project.name = name
                if description is not None:
                    project.description = description
                if enabled is not None:
                    project.enabled = enabled
                    if not enabled:  # Keystone revokes the project's tokens when it is disabled
                        s.execute(delete(Token).where(Token.project_id == project_id))
                s.flush()
                return _record(project)
        except IntegrityError:
            raise Conflict(f"A project named {name!r} already exists.") from None

    def find(
        self, ctx: RequestContext, name: str | None, domain_id: str | None, enabled: bool | None = None
    ) -> list[ProjectRecord]:
        """Projects by name and domain (what clients resolve `--project NAME` with): for an
        admin, as Keystone (others list theirs with `GET /auth/projects`)."""
        policy.enforce(ctx, "identity:list_projects")
        stmt = select(Project).order_by(Project.name)
        if name is not None:
            stmt = stmt.where(Project.name == name)
        if domain_id is not None:
            stmt = stmt.where(Project.domain_id == domain_id)
        if enabled is not None:
            stmt = stmt.where(Project.enabled.is_(enabled))
        with self.db() as s:
            return [_record(p) for p in s.scalars(stmt)]

    def get(self, ctx: RequestContext, project_id: str) -> ProjectRecord:
        """A project: an admin may see any, others their token's."""
        policy.enforce(ctx, "identity:get_project")
        with self.db() as s:
            project = s.scalar(select(Project).where(Project.id == project_id))
        if project is None or (project.id != ctx.project_id and not ctx.is_admin):
            raise NotFound(f"Could not find project: {project_id}.")
        return _record(project)


def _owned(s: Session, project_id: str) -> str:
    """What a project still owns, as `2 volumes, 1 server` ("" if nothing)."""
    counts = (
        ("volume", s.scalar(select(func.count()).where(Volume.project_id == project_id))),
        ("snapshot", s.scalar(select(func.count()).where(Snapshot.project_id == project_id))),
        (
            "server",
            s.scalar(
                select(func.count()).where(
                    Server.project_id == project_id, Server.status != ServerStatus.DELETED
                )
            ),
        ),
    )
    return ", ".join(f"{n} {what}{'s' if n != 1 else ''}" for what, n in counts if n)
