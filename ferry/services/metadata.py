"""Metadata of volumes and snapshots, item by item as Cinder's metadata APIs change it: merge
(`POST`), replace all (`PUT`), set or delete one key; and a volume's image metadata
(`os-set_image_metadata`, `os-unset_image_metadata`, `os-show_image_metadata`).

Each change is one transaction over the row (read, change, write), so two requests setting
different keys of one resource both take effect.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from ferry.db.models import Snapshot, Volume
from ferry.domain.clock import utcnow
from ferry.domain.errors import NotFound
from ferry.domain.volumes import check_metadata
from ferry.services import policy
from ferry.services.context import RequestContext
from ferry.services.queries import get_owned


class Owner(StrEnum):
    """The resource a metadata call names: its model and its policy actions."""

    VOLUME = "Volume"
    SNAPSHOT = "Snapshot"


_MODELS: dict[Owner, type[Volume] | type[Snapshot]] = {Owner.VOLUME: Volume, Owner.SNAPSHOT: Snapshot}
_READ = {Owner.VOLUME: "volume:get", Owner.SNAPSHOT: "snapshot:get"}
_WRITE = {Owner.VOLUME: "volume:update", Owner.SNAPSHOT: "snapshot:update"}


class MetadataService:
    def __init__(self, db: sessionmaker[Session]) -> None:
        self.db = db

    def _row(self, s: Session, ctx: RequestContext, owner: Owner, ident: str) -> Volume | Snapshot:
        return get_owned(s, _MODELS[owner], ctx, ident, owner.value)  # type: ignore[type-var]

    def get(self, ctx: RequestContext, owner: Owner, ident: str) -> dict[str, Any]:
        policy.enforce(ctx, _READ[owner])
        with self.db() as s:
            return dict(self._row(s, ctx, owner, ident).meta or {})

    def get_item(self, ctx: RequestContext, owner: Owner, ident: str, key: str) -> str:
        meta = self.get(ctx, owner, ident)
        if key not in meta:
            raise NotFound(f"{owner.value} {ident} has no metadata with key {key}.")
        return str(meta[key])

    def set(
        self, ctx: RequestContext, owner: Owner, ident: str, pairs: dict[str, str], *, replace: bool
    ) -> dict[str, Any]:
        """Merge `pairs` into the metadata (or, with `replace`, make them all of it)."""
        policy.enforce(ctx, _WRITE[owner])
        with self.db.begin() as s:
            row = self._row(s, ctx, owner, ident)
            meta = dict(pairs) if replace else {**(row.meta or {}), **pairs}
            row.meta = check_metadata(meta)
            row.updated_at = utcnow()
            return dict(meta)

    def delete_item(self, ctx: RequestContext, owner: Owner, ident: str, key: str) -> None:
        policy.enforce(ctx, _WRITE[owner])
        with self.db.begin() as s:
            row = self._row(s, ctx, owner, ident)
            meta = dict(row.meta or {})
            if key not in meta:
                raise NotFound(f"{owner.value} {ident} has no metadata with key {key}.")
            del meta[key]
            row.meta = meta
            row.updated_at = utcnow()

    # -- a volume's image metadata ------------------------------------------------------
    def image_metadata(self, ctx: RequestContext, volume_id: str) -> dict[str, Any]:
        policy.enforce(ctx, "volume:get")
        with self.db() as s:
            return dict(self._volume(s, ctx, volume_id).image_meta or {})

    def set_image_metadata(
        self, ctx: RequestContext, volume_id: str, pairs: dict[str, str]
    ) -> dict[str, Any]:
        policy.enforce(ctx, "volume:update")
        with self.db.begin() as s:
            vol = self._volume(s, ctx, volume_id)
            meta = {**(vol.image_meta or {}), **pairs}
            vol.image_meta = meta
            vol.updated_at = utcnow()
            return dict(meta)

    def unset_image_metadata(self, ctx: RequestContext, volume_id: str, key: str) -> None:
        policy.enforce(ctx, "volume:update")
        with self.db.begin() as s:
            vol = self._volume(s, ctx, volume_id)
            meta = dict(vol.image_meta or {})
            if key not in meta:
                raise NotFound(f"Volume {volume_id} has no image metadata with key {key}.")
            del meta[key]
            vol.image_meta = meta
            vol.updated_at = utcnow()

    @staticmethod
    def _volume(s: Session, ctx: RequestContext, volume_id: str) -> Volume:
        return get_owned(s, Volume, ctx, volume_id, "Volume")
