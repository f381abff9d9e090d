"""The runs one conductor drives, and the keeper of their leases: the same for volume migrations
(`migration.requests`) and server live migrations (`server_migration.requests`).

One task per migration id. A run that finds a host or the database away stops where it is
(`Unavailable`, a database error): its lease stays, so no other conductor takes it, and the keeper
drives it again, from facts read afresh, at its next tick. The keeper renews the leases held here,
cancels a run whose lease another conductor took (that one settles it), and adopts what is held
here yet not driven, and what lapsed elsewhere.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any

from sqlalchemy.exc import InterfaceError, OperationalError

from ferry.domain.errors import Unavailable
from ferry.services.migration.conductor import Conductor

log = logging.getLogger(__name__)
Work = Coroutine[Any, Any, None]


class ConductedRuns:
    def __init__(
        self,
        conductor: Conductor,
        kind: str,
        adopt: Callable[[str], Work],
        *,
        cancel_asked: Callable[[str], None] | None = None,
        forget: Callable[[str], None] | None = None,
    ) -> None:
        """`kind` names the migrations in the log; `adopt(id)` is the work that settles one this
        conductor did not start (a restart's inspection first); `cancel_asked(id)`: a cancel was
        asked of another worker for a run held here; `forget(id)`: a run ended."""
        self.conductor = conductor
        self.kind = kind
        self.adopt = adopt
        self.cancel_asked = cancel_asked
        self.forget = forget
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self._keeper: asyncio.Task[None] | None = None
        self._held: set[str] = set()
        """The leases held at the last tick: only a run whose lease was held and is no longer
        was taken by another (one launched since may not have taken its lease yet)."""

    def launch(self, migration_id: str, work: Callable[[], Work]) -> None:
        """Drive `work()` unless a run of this migration is under way here already (the keeper
        may have been first). `work` is made in the task: one cancelled before it starts leaves
        no coroutine never awaited."""
        if migration_id in self.tasks:
            return
        task = asyncio.get_running_loop().create_task(self._unless_away(migration_id, work))
        self.tasks[migration_id] = task
        task.add_done_callback(lambda _t: self._ended(migration_id))

    def _ended(self, migration_id: str) -> None:
        self.tasks.pop(migration_id, None)
        if self.forget is not None:
            self.forget(migration_id)

    async def _unless_away(self, migration_id: str, work: Callable[[], Work]) -> None:
        try:
            await work()
        except Unavailable as e:
            log.warning("%s %s waits: %s", self.kind, migration_id, e.message)
        except (OperationalError, InterfaceError) as e:
            log.warning(
                "%s %s waits: the database is unavailable (%s)", self.kind, migration_id, type(e).__name__
            )

    async def wait(self, migration_id: str) -> None:
        task = self.tasks.get(migration_id)
        if task is not None:
            await asyncio.shield(task)

    def keep_leases(self) -> None:
        self._keeper = asyncio.get_running_loop().create_task(self._keep_leases())

    async def _keep_leases(self) -> None:
        while True:
            await asyncio.sleep(self.conductor.terms.renew_every_s)  # a lease timer, not a sync
            try:
                self.keep()
            except (OperationalError, InterfaceError) as e:  # PostgreSQL away: the next tick retries
                log.warning(
                    "conductor %s: cannot renew %s leases: %s", self.conductor.id, self.kind, type(e).__name__
                )

    def keep(self) -> None:
        """One tick: renew what is driven here, let go of what another took, adopt the rest."""
        held, cancelled = self.conductor.renew()
        for mid in cancelled:
            if self.cancel_asked is not None:
                self.cancel_asked(mid)
        lost, self._held = self._held - held, held
        for mid, task in list(self.tasks.items()):
            if mid in lost and not task.done():
                log.warning("%s %s: lease lost to another conductor; it settles it", self.kind, mid)
                task.cancel()
        for mid in held - set(self.tasks):  # ours, yet nothing drives it: it waited, or crashed
            self.launch(mid, partial(self.adopt, mid))
        for mid in self.conductor.lapsed():
            if mid not in self.tasks:
                log.info("%s %s: its conductor's lease lapsed; adopting it", self.kind, mid)
                self.launch(mid, partial(self.adopt, mid))

    async def stop(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
        for task in list(self.tasks.values()):
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
