"""What a server keeps besides its life cycle: the key name, description, access IPs, metadata and
tags a create or an update names (Nova's server update, /servers/{id}/metadata, /tags). None of it
reaches the guest: Ferry's guests have no metadata service or config drive.

A create is admitted in its own transaction (`admit`): a bootable image, a flavor the caller sees
and that fits the image, a key pair of the user's, metadata within `metadata_items`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from ferry.db.models import Flavor, Image, Server
from ferry.domain.clock import utcnow
from ferry.domain.errors import BadRequest, NotFound
from ferry.services import policy
from ferry.services.compute_quotas import ComputeQuotas
from ferry.services.context import RequestContext
from ferry.services.flavors import check_fits, find_flavor
from ferry.services.images import bootable, find_image
from ferry.services.keypairs import find_key_pair
from ferry.services.queries import get_owned

MAX_TAGS = 50
"""Nova's `MAX_TAGS_PER_INSTANCE`."""
UNSET: Any = object()


@dataclass(frozen=True)
class ServerDetails:
    key_name: str | None = None
    description: str | None = None
    access_ipv4: str | None = None
    access_ipv6: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    tags: tuple[str, ...] = ()

    def columns(self) -> dict[str, Any]:
        """The server row's columns for these fields."""
        return {
            "key_name": self.key_name,
            "description": self.description,
            "access_ipv4": self.access_ipv4,
            "access_ipv6": self.access_ipv6,
            "meta": dict(self.metadata),
            "tags": list(self.tags),
        }


NO_DETAILS = ServerDetails()


def admit(
    s: Session, ctx: RequestContext, quotas: ComputeQuotas, image_ref: str, flavor_ref: str, d: ServerDetails
) -> tuple[Image, Flavor]:
    """What a create boots, checked as Nova checks it (400s) in the create's transaction: a
    bootable image and a flavor the caller sees, the flavor within the image's minimums, then
    the fields (`check_for_create`)."""
    try:
        image = find_image(s, image_ref, ctx)
    except NotFound:
        raise BadRequest(f"Image {image_ref} could not be found.") from None
    why = bootable(image)
    if why is not None:
        raise BadRequest(why)
    try:
        flavor = find_flavor(s, ctx, flavor_ref)
    except NotFound:
        raise BadRequest(f"Flavor {flavor_ref} could not be found.") from None
    check_fits(flavor, image.min_ram or 0, image.min_disk or 0)
    check_for_create(s, ctx, quotas, d)
    return image, flavor


def check_for_create(s: Session, ctx: RequestContext, quotas: ComputeQuotas, d: ServerDetails) -> None:
    """Nova's create checks of these fields, in the create's transaction."""
    if d.key_name is not None and find_key_pair(s, ctx.user_id, d.key_name) is None:
        raise BadRequest("Invalid key_name provided.")
    quotas.check_metadata(s, ctx.project_id, len(d.metadata))
    if len(d.tags) > MAX_TAGS:
        raise BadRequest(f"The number of tags exceeded the per-server limit {MAX_TAGS}")


class ServerDetailService:
    def __init__(self, db: sessionmaker[Session], quotas: ComputeQuotas) -> None:
        self.db = db
        self.quotas = quotas

    def _set(self, s: Session, server: Server, **values: Any) -> Server:
        s.execute(update(Server).where(Server.id == server.id).values(**values, updated_at=utcnow()))
        s.refresh(server)
        return server

    def update(
        self,
        ctx: RequestContext,
        server_id: str,
        name: str | None = None,
        description: Any = UNSET,
        access_ipv4: Any = UNSET,
        access_ipv6: Any = UNSET,
    ) -> Server:
        """Nova's `PUT /servers/{id}`: the name, description (2.19) and access IPs."""
        policy.enforce(ctx, "server:update")
        values: dict[str, Any] = {}
        if name is not None:
            values["name"] = name
        for key, value in (
            ("description", description),
            ("access_ipv4", access_ipv4),
            ("access_ipv6", access_ipv6),
        ):
            if value is not UNSET:
                values[key] = value
        with self.db.begin() as s:
            server = get_owned(s, Server, ctx, server_id, "Server")
            return self._set(s, server, **values) if values else server

    # -- metadata ----------------------------------------------------------------------------------
    def metadata(self, ctx: RequestContext, server_id: str) -> dict[str, str]:
        policy.enforce(ctx, "server:get")
        with self.db() as s:
            return dict(get_owned(s, Server, ctx, server_id, "Server").meta)

    def set_metadata(
        self, ctx: RequestContext, server_id: str, items: Mapping[str, str], *, replace: bool
    ) -> dict[str, str]:
        """Merge `items` into the metadata (`replace`: they become the whole of it), within the
        project's `metadata_items` limit (Nova: 403)."""
        policy.enforce(ctx, "server:update")
        with self.db.begin() as s:
            server = get_owned(s, Server, ctx, server_id, "Server")
            new = dict(items) if replace else {**server.meta, **items}
            self.quotas.check_metadata(s, server.project_id, len(new))
            return dict(self._set(s, server, meta=new).meta)

    def delete_metadata(self, ctx: RequestContext, server_id: str, key: str) -> None:
        policy.enforce(ctx, "server:update")
        with self.db.begin() as s:
            server = get_owned(s, Server, ctx, server_id, "Server")
            if key not in server.meta:
                raise NotFound("Metadata item was not found")
            self._set(s, server, meta={k: v for k, v in server.meta.items() if k != key})

    # -- tags (2.26) -------------------------------------------------------------------------------
    def tags(self, ctx: RequestContext, server_id: str) -> list[str]:
        policy.enforce(ctx, "server:get")
        with self.db() as s:
            return list(get_owned(s, Server, ctx, server_id, "Server").tags)

    def set_tags(self, ctx: RequestContext, server_id: str, tags: list[str]) -> list[str]:
        policy.enforce(ctx, "server:update")
        unique = list(dict.fromkeys(tags))
        if len(unique) > MAX_TAGS:
            raise BadRequest(f"The number of tags exceeded the per-server limit {MAX_TAGS}")
        with self.db.begin() as s:
            server = get_owned(s, Server, ctx, server_id, "Server")
            return list(self._set(s, server, tags=unique).tags)

    def add_tag(self, ctx: RequestContext, server_id: str, tag: str) -> bool:
        """Whether the tag is new (Nova: 201 then, 204 when it was there)."""
        policy.enforce(ctx, "server:update")
        with self.db.begin() as s:
            server = get_owned(s, Server, ctx, server_id, "Server")
            if tag in server.tags:
                return False
            if len(server.tags) >= MAX_TAGS:
                raise BadRequest(f"The number of tags exceeded the per-server limit {MAX_TAGS}")
            self._set(s, server, tags=[*server.tags, tag])
            return True

    def delete_tag(self, ctx: RequestContext, server_id: str, tag: str | None) -> None:
        """One tag (404 when absent), or every tag (`tag` None)."""
        policy.enforce(ctx, "server:update")
        with self.db.begin() as s:
            server = get_owned(s, Server, ctx, server_id, "Server")
            if tag is not None and tag not in server.tags:
                raise NotFound(f"Tag {tag} was not found on server {server_id}")
            self._set(s, server, tags=[] if tag is None else [t for t in server.tags if t != tag])
