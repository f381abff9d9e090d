"""A server's live migration between hosts as a pure machine (DESIGN §10): its steps and
statuses (`plan`), the machine that turns facts into actions (`machine`), and the table that
settles one a crash interrupted (`recovery`)."""

from ferry.domain.server_migration.machine import LiveMachine
from ferry.domain.server_migration.plan import LiveStatus, LiveStep
from ferry.domain.server_migration.recovery import LiveFacts, LiveOutcome, settle_live

__all__ = ["LiveFacts", "LiveMachine", "LiveOutcome", "LiveStatus", "LiveStep", "settle_live"]
