"""Password hashes (argon2id): made and checked in a small pool of worker threads, never on the
event loop, and in the same time whether or not the account exists.

argon2-cffi releases the GIL while it hashes, so a worker thread costs the event loop nothing but
CPU; the workers run at a lower scheduling priority (`hash_nice`) so that, when hashes and
requests compete for the cores, requests win. At most `max_pending_hashes` hashes run or wait at
once: beyond that a login is refused (429) instead of queueing without bound.

This module owns the hasher and its pool; it knows nothing of users, tokens or HTTP.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from ferry.config import IdentityConfig
from ferry.domain.errors import TooManyRequests

log = logging.getLogger(__name__)
T = TypeVar("T")


def hasher_for(cfg: IdentityConfig) -> PasswordHasher:
    return PasswordHasher(
        time_cost=cfg.argon2_time_cost, memory_cost=cfg.argon2_memory_cost, parallelism=cfg.argon2_parallelism
    )


def dummy_hash(hasher: PasswordHasher) -> str:
    """An encoded argon2id hash with the hasher's parameters, a random salt and a random digest:
    verifying any password against it costs exactly what a real verify costs and always fails."""

    def b64(n: int) -> str:
        return base64.b64encode(os.urandom(n)).rstrip(b"=").decode()

    return (
        f"$argon2id$v=19$m={hasher.memory_cost},t={hasher.time_cost},p={hasher.parallelism}"
        f"${b64(hasher.salt_len)}${b64(hasher.hash_len)}"
    )


def _lower_priority(increment: int) -> None:
    """Linux keeps a nice value per thread, and argon2's lane threads inherit the worker's."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), min(19, os.nice(0) + increment))
    except (AttributeError, OSError):  # not Linux, or not allowed: hashing still works
        log.debug("could not lower the priority of a password-hash worker")


class Passwords:
    def __init__(self, cfg: IdentityConfig, hasher: PasswordHasher | None = None) -> None:
        self.hasher = hasher or hasher_for(cfg)
        self.workers = cfg.hash_workers
        self.nice = cfg.hash_nice
        self.max_pending = cfg.max_pending_hashes
        self.pending = 0
        """Hashes running or queued (touched on the event loop only)."""
        self._dummy = dummy_hash(self.hasher)
        self._pool: ThreadPoolExecutor | None = None

    def hash_now(self, password: str) -> str:
        """Hash in the calling thread: for `ferry init` and tools that run no event loop."""
        return self.hasher.hash(password)

    async def hash(self, password: str) -> str:
        return await self._in_pool(self.hasher.hash, password)

    async def verify(self, hashed: str | None, password: str) -> bool:
        """Whether `password` matches `hashed`. With no hash (no such user, or one that may not
        log in) the password is checked against a dummy hash of the same parameters: one argon2
        verify either way, so the answer takes the same time."""
        ok = await self._in_pool(self._check, hashed or self._dummy, password)
        return ok and hashed is not None

    def needs_rehash(self, hashed: str) -> bool:
        """Whether a stored hash was made with other parameters than the configured ones."""
        try:
            return self.hasher.check_needs_rehash(hashed)
        except (InvalidHashError, ValueError):
            return True

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def _check(self, hashed: str, password: str) -> bool:
        try:
            return self.hasher.verify(hashed, password)
        except (VerificationError, InvalidHashError):
            return False

    async def _in_pool(self, fn: Callable[..., T], *args: str) -> T:
        if self.pending >= self.max_pending:
            raise TooManyRequests("Too many logins in progress; retry shortly.", 1)
        if self._pool is None:  # made on first use: `ferry init` and tools never need it
            self._pool = ThreadPoolExecutor(self.workers, "ferry-hash", _lower_priority, (self.nice,))
        self.pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
        finally:
            self.pending -= 1
