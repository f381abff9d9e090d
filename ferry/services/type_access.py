"""Type access: the projects a private volume type is shared with (Cinder's
`os-volume-type-access`). A private type is visible and usable only by admins and those projects
(`queries.type_visible`)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from ferry.db.models import Project, VolumeTypeProject
from ferry.domain.errors import BadRequest, Conflict, NotFound
from ferry.services import policy
from ferry.services.context import RequestContext
from ferry.services.queries import get_type


class TypeAccess:
    def __init__(self, db: sessionmaker[Session]) -> None:
        self.db = db

    def projects(self, ctx: RequestContext, ref: str) -> tuple[str, list[str]]:
        """The type's id and the projects it is shared with."""
        policy.enforce(ctx, "type:manage")
        with self.db() as s:
            vt = get_type(s, ref, ctx)
            if vt.is_public:
                raise NotFound("Access list not available for public volume types.")
            rows = s.scalars(
                select(VolumeTypeProject.project_id)
                .where(VolumeTypeProject.volume_type_id == vt.id)
                .order_by(VolumeTypeProject.project_id)
            )
            return vt.id, list(rows)

    def add(self, ctx: RequestContext, ref: str, project_id: str) -> None:
        policy.enforce(ctx, "type:manage")
        try:
            with self.db.begin() as s:
                vt = get_type(s, ref, ctx)
                if vt.is_public:
                    raise BadRequest("Type access modification is not applicable to public volume type.")
                if s.get(Project, project_id) is None:
                    raise NotFound(f"Project {project_id} could not be found.")
                if s.get(VolumeTypeProject, (vt.id, project_id)) is not None:
                    raise Conflict(
                        f"Volume type access for {vt.id} / {project_id} combination already exists."
                    )
                s.add(VolumeTypeProject(volume_type_id=vt.id, project_id=project_id))
        except IntegrityError:
            raise Conflict(
                f"Volume type access for {ref} / {project_id} combination already exists."
            ) from None

    def remove(self, ctx: RequestContext, ref: str, project_id: str) -> None:
        policy.enforce(ctx, "type:manage")
        with self.db.begin() as s:
            vt = get_type(s, ref, ctx)
            if vt.is_public:
                raise BadRequest("Type access modification is not applicable to public volume type.")
            row = s.get(VolumeTypeProject, (vt.id, project_id))
            if row is None:
                raise NotFound(f"Volume type access not found for {vt.id} / {project_id} combination.")
            s.delete(row)
