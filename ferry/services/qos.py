"""QoS specs (Cinder's `qos-specs`): named sets of limits with a consumer, associated with volume
types (a type has at most one). Front-end specs are the guest-disk limits (`domain.qos`)."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from ferry.db.models import QosSpecs, Volume, VolumeType
from ferry.domain.clock import utcnow
from ferry.domain.errors import BadRequest, Conflict, NotFound
from ferry.domain.ids import is_uuid, new_id
from ferry.domain.qos import QosConsumer, disk_limits
from ferry.services import policy
from ferry.services.context import RequestContext
from ferry.services.queries import get_type
from ferry.services.types import check_specs_input


def consumer_of(value: object) -> QosConsumer:
    try:
        return QosConsumer(str(value))
    except ValueError:
        allowed = ", ".join(c.value for c in QosConsumer)
        raise BadRequest(f"Invalid input: consumer {str(value)[:40]!r}: use one of {allowed}.") from None


def _get(s: Session, qos_id: str) -> QosSpecs:
    q = s.get(QosSpecs, qos_id) if is_uuid(qos_id) else None
    if q is None:
        raise NotFound(f"QoS spec {qos_id} could not be found.")
    return q


def disk_limits_of(s: Session, volume_type_id: str | None) -> dict[str, int]:
    """The guest-disk limits a volume of this type is attached with: its type's QoS specs'
    front-end limits (none without a type, QoS specs, or front-end keys)."""
    vt = s.get(VolumeType, volume_type_id) if volume_type_id else None
    q = s.get(QosSpecs, vt.qos_specs_id) if vt is not None and vt.qos_specs_id else None
    return disk_limits(q.consumer, q.specs or {}) if q is not None else {}


def volume_disk_limits(s: Session, volume_id: str) -> dict[str, int]:
    vol = s.get(Volume, volume_id)
    return disk_limits_of(s, vol.volume_type_id if vol is not None else None)


class QosService:
    def __init__(self, db: sessionmaker[Session]) -> None:
        self.db = db

    def all(self, ctx: RequestContext) -> list[QosSpecs]:
        policy.enforce(ctx, "qos:get")
        with self.db() as s:
            return list(s.scalars(select(QosSpecs).order_by(QosSpecs.created_at, QosSpecs.id)))

    def get(self, ctx: RequestContext, qos_id: str) -> QosSpecs:
        policy.enforce(ctx, "qos:get")
        with self.db() as s:
            return _get(s, qos_id)

    def create(
        self, ctx: RequestContext, name: str, consumer: QosConsumer, specs: dict[str, str]
    ) -> QosSpecs:
        policy.enforce(ctx, "qos:manage")
        name = name.strip()
        if not name:
            raise BadRequest("QoS specs name can not be empty.")
        check_specs_input(specs)
        try:
            with self.db.begin() as s:
                q = QosSpecs(id=new_id(), name=name, consumer=consumer, specs=specs, created_at=utcnow())
                s.add(q)
            return q
        except IntegrityError:
            raise Conflict(f"QoS Specs {name} already exists.") from None

    def set_keys(
        self, ctx: RequestContext, qos_id: str, specs: dict[str, str], consumer: QosConsumer | None
    ) -> None:
        policy.enforce(ctx, "qos:manage")
        check_specs_input(specs)
        with self.db.begin() as s:
            q = _get(s, qos_id)
            q.specs = {**(q.specs or {}), **specs}
            if consumer is not None:
                q.consumer = consumer

    def unset_keys(self, ctx: RequestContext, qos_id: str, keys: list[str]) -> None:
        policy.enforce(ctx, "qos:manage")
        with self.db.begin() as s:
            q = _get(s, qos_id)
            specs = dict(q.specs or {})
            for key in keys:
                if key not in specs:
                    raise NotFound(f"QoS spec {qos_id} has no key {key[:255]}.")
                del specs[key]
            q.specs = specs

    def delete(self, ctx: RequestContext, qos_id: str, force: bool) -> None:
        policy.enforce(ctx, "qos:manage")
        with self.db.begin() as s:
            q = _get(s, qos_id)
            used = s.scalar(select(VolumeType.id).where(VolumeType.qos_specs_id == q.id).limit(1))
            if used is not None and not force:
                raise BadRequest(f"QoS Specs {q.id} is still associated with entities.")
            s.execute(update(VolumeType).where(VolumeType.qos_specs_id == q.id).values(qos_specs_id=None))
            s.delete(q)

    def associations(self, ctx: RequestContext, qos_id: str) -> list[VolumeType]:
        policy.enforce(ctx, "qos:get")
        with self.db() as s:
            q = _get(s, qos_id)
            return list(
                s.scalars(select(VolumeType).where(VolumeType.qos_specs_id == q.id).order_by(VolumeType.name))
            )

    def associate(self, ctx: RequestContext, qos_id: str, type_ref: str | None) -> None:
        policy.enforce(ctx, "qos:manage")
        if not type_ref:
            raise BadRequest("Volume Type id must not be None.")
        with self.db.begin() as s:
            q = _get(s, qos_id)
            vt = get_type(s, type_ref, ctx)
            if vt.qos_specs_id not in (None, q.id):
                raise BadRequest(
                    f"Volume type {vt.id} is already associated with another qos specs: {vt.qos_specs_id}."
                )
            vt.qos_specs_id = q.id

    def disassociate(self, ctx: RequestContext, qos_id: str, type_ref: str | None) -> None:
        policy.enforce(ctx, "qos:manage")
        if not type_ref:
            raise BadRequest("Volume Type id must not be None.")
        with self.db.begin() as s:
            q = _get(s, qos_id)
            vt = get_type(s, type_ref, ctx)
            if vt.qos_specs_id != q.id:
                raise BadRequest(f"Volume type {vt.id} is not associated with qos specs {q.id}.")
            vt.qos_specs_id = None

    def disassociate_all(self, ctx: RequestContext, qos_id: str) -> None:
        policy.enforce(ctx, "qos:manage")
        with self.db.begin() as s:
            q = _get(s, qos_id)
            s.execute(update(VolumeType).where(VolumeType.qos_specs_id == q.id).values(qos_specs_id=None))
