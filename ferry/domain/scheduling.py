"""Choosing a backend for a new volume: a pure function over pool statistics."""

from __future__ import annotations

from dataclasses import dataclass

from ferry.domain.errors import BadRequest
from ferry.domain.model import BackendConfig


@dataclass(frozen=True)
class PoolStats:
    backend: BackendConfig
    provisioned_gib: int
    allocated_bytes: int = 0
    free_bytes: int = 0

    @property
    def free_gib(self) -> float:
        return self.backend.provisionable_gib - self.provisioned_gib

    def fits(self, size_gib: int) -> bool:
        return self.free_gib >= size_gib


def choose_backend(pools: list[PoolStats], size_gib: int, pinned: str | None = None) -> PoolStats:
    """The pinned backend if a type pins one, else the one with the most free capacity."""
    if pinned is not None:
        match = [p for p in pools if p.backend.name == pinned]
        if not match:
            raise BadRequest(f"Volume type pins backend {pinned!r}, which does not exist.")
        candidates = match
    else:
        candidates = pools
    fitting = [p for p in candidates if p.fits(size_gib)]
    if not fitting:
        where = f"backend {pinned!r}" if pinned else "any backend"
        raise BadRequest(f"No capacity for a {size_gib} GiB volume on {where}.")
    return max(fitting, key=lambda p: (p.free_gib, p.backend.name))
