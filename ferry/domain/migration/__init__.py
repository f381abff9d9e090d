"""The migration of one volume, pure: the plan (`plan`), the state machine that decides each next
action (`machine`), the step log's vocabulary (`events`), convergence (`convergence`) and how an
unfinished migration is settled (`recovery`). Nothing here does I/O."""

from ferry.domain.migration.convergence import ConvergenceWatch, MirrorCondition, converged
from ferry.domain.migration.events import MESSAGES, EventKind
from ferry.domain.migration.plan import (
    ACTIVE,
    ATTACHED_STEPS,
    DETACHED_STEPS,
    NO_RETURN,
    CopyMode,
    MigrationPlan,
    RunStatus,
    Step,
    check_destination,
    plan,
)
from ferry.domain.migration.recovery import Cause, Recovery, RecoveryFacts, recover, settle

__all__ = [
    "ACTIVE",
    "ATTACHED_STEPS",
    "DETACHED_STEPS",
    "MESSAGES",
    "NO_RETURN",
    "Cause",
    "ConvergenceWatch",
    "CopyMode",
    "EventKind",
    "MigrationPlan",
    "MirrorCondition",
    "Recovery",
    "RecoveryFacts",
    "RunStatus",
    "Step",
    "check_destination",
    "converged",
    "plan",
    "recover",
    "settle",
]
