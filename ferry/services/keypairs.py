"""Key pair use cases (Nova's os-keypairs): import or make one, list, show, delete. Key pairs belong
to a user; an admin may name another user (`user_id`, Nova's 2.10). A new pair is counted against
the `key_pairs` quota under the project's claim lock, so concurrent creates cannot overshoot.

Ferry's guests have no metadata service: a server keeps the key name it was created with and
shows it, and nothing puts the key into the guest.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from ferry.db.models import KeyPair
from ferry.domain.clock import utcnow
from ferry.domain.errors import BadRequest, Conflict, Forbidden, NotFound
from ferry.domain.keypairs import KeyType, NewKey, check_name, generated, imported
from ferry.services import policy
from ferry.services.compute_quotas import ComputeQuotas
from ferry.services.context import RequestContext


@dataclass(frozen=True)
class Created:
    pair: KeyPair
    private_key: str | None


def find_key_pair(s: Session, user_id: str, name: str) -> KeyPair | None:
    return s.scalar(select(KeyPair).where(KeyPair.user_id == user_id, KeyPair.name == name))


class KeyPairs:
    def __init__(self, db: sessionmaker[Session], quotas: ComputeQuotas) -> None:
        self.db = db
        self.quotas = quotas

    @staticmethod
    def _owner(ctx: RequestContext, user_id: str | None) -> str:
        if user_id is None or user_id == ctx.user_id:
            return ctx.user_id
        if not ctx.is_admin:
            raise Forbidden(
                "Policy doesn't allow os_compute_api:os-keypairs to be performed for another user."
            )
        return user_id

    def create(
        self,
        ctx: RequestContext,
        name: object,
        key_type: KeyType = KeyType.SSH,
        public_key: object = None,
        user_id: str | None = None,
    ) -> Created:
        policy.enforce(ctx, "keypair:manage")
        owner = self._owner(ctx, user_id)
        name = check_name(name)
        key: NewKey = (
            generated(key_type, name, utcnow()) if public_key is None else imported(key_type, public_key)
        )
        try:
            with self.db.begin() as s:
                self.quotas.claim_key_pair(s, ctx.project_id, owner)
                if find_key_pair(s, owner, name) is not None:
                    raise Conflict(f"Key pair '{name}' already exists.")
                pair = KeyPair(
                    user_id=owner,
                    name=name,
                    key_type=key_type,
                    public_key=key.public_key,
                    fingerprint=key.fingerprint,
                    created_at=utcnow(),
                )
                s.add(pair)
        except IntegrityError:
            raise Conflict(f"Key pair '{name}' already exists.") from None
        return Created(pair, key.private_key)

    def list_pairs(
        self,
        ctx: RequestContext,
        user_id: str | None = None,
        limit: int | None = None,
        marker: str | None = None,
    ) -> list[KeyPair]:
        """The user's key pairs by name; `marker` is the last name of the page before (2.35)."""
        policy.enforce(ctx, "keypair:get")
        owner = self._owner(ctx, user_id)
        stmt = select(KeyPair).where(KeyPair.user_id == owner).order_by(KeyPair.name)
        with self.db() as s:
            if marker is not None:
                if find_key_pair(s, owner, marker) is None:
                    raise BadRequest(f"marker [{marker}] not found")
                stmt = stmt.where(KeyPair.name > marker)
            if limit is not None:
                stmt = stmt.limit(limit)
            return list(s.scalars(stmt))

    def get(self, ctx: RequestContext, name: str, user_id: str | None = None) -> KeyPair:
        policy.enforce(ctx, "keypair:get")
        owner = self._owner(ctx, user_id)
        with self.db() as s:
            pair = find_key_pair(s, owner, name)
        if pair is None:
            raise NotFound(f"Keypair {name} not found for user {owner}")
        return pair

    def delete(self, ctx: RequestContext, name: str, user_id: str | None = None) -> None:
        policy.enforce(ctx, "keypair:manage")
        owner = self._owner(ctx, user_id)
        with self.db.begin() as s:
            gone = s.execute(delete(KeyPair).where(KeyPair.user_id == owner, KeyPair.name == name))
            if not gone.rowcount:  # type: ignore[attr-defined]
                raise NotFound(f"Keypair {name} not found for user {owner}")
