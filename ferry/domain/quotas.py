"""Quota rules, Cinder-shaped and resource-agnostic: which limits apply, whether a claim fits them,
and how a refusal reads. Pure: limits, usage and deltas come in as plain mappings of resource name
to integer; the services count usage and store overrides.

A limit of -1 (`UNLIMITED`) never refuses. A project's limit for a resource is its own override,
else its class's (`default`), else the configured default. Volume quotas name their resources as
Cinder does (`volumes`, `gigabytes`, `volumes_{type}` …); compute quotas (`instances`, `cores`,
`ram`) are meant to be further `ResourceSet`s judged by the same functions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ferry.domain.errors import BadRequest, OverLimit

UNLIMITED = -1
MAX_LIMIT = 0x7FFFFFFF
"""Cinder's DB_MAX_INT: the largest limit it accepts."""
DEFAULT_CLASS = "default"

VOLUMES, SNAPSHOTS, GIGABYTES = "volumes", "snapshots", "gigabytes"
PER_VOLUME_GIGABYTES = "per_volume_gigabytes"
BACKUPS, BACKUP_GIGABYTES, GROUPS = "backups", "backup_gigabytes", "groups"
TYPE_PARTS = (VOLUMES, GIGABYTES, SNAPSHOTS)
"""The resources Cinder keeps per volume type, as `{part}_{type name}`."""
TYPE_DEFAULT = UNLIMITED

VOLUME_DEFAULTS: dict[str, int] = {
    VOLUMES: 10,
    SNAPSHOTS: 10,
    GIGABYTES: 1000,
    PER_VOLUME_GIGABYTES: UNLIMITED,
    BACKUPS: 10,
    BACKUP_GIGABYTES: 1000,
    GROUPS: 10,
}
"""Cinder's defaults (`quota_volumes`, … `per_volume_size_limit`). Ferry has no backups or groups:
their limits are shown and may be set, and nothing ever uses them."""

LIMIT_ONLY = frozenset({PER_VOLUME_GIGABYTES})
"""Resources that bound one request, not a project's total: no usage, never "below usage"."""

Counts = Mapping[str, int]


def per_type(part: str, type_name: str) -> str:
    return f"{part}_{type_name}"


@dataclass(frozen=True)
class ResourceSet:
    """The resources quotas know, each with its configured default, in display order."""

    defaults: Mapping[str, int]

    @classmethod
    def volumes(cls, defaults: Mapping[str, int], type_names: Iterable[str]) -> ResourceSet:
        """Cinder's volume resources: the global ones, then three per volume type."""
        full = dict(defaults)
        for name in sorted(type_names):
            for part in TYPE_PARTS:
                full[per_type(part, name)] = TYPE_DEFAULT
        return cls(full)

    def __contains__(self, name: object) -> bool:
        return name in self.defaults

    def names(self) -> list[str]:
        return list(self.defaults)


def effective_limits(resources: ResourceSet, class_limits: Counts, project_limits: Counts) -> dict[str, int]:
    """Each resource's limit: the project's override, else the class's, else the default."""
    return {
        name: project_limits.get(name, class_limits.get(name, default))
        for name, default in resources.defaults.items()
    }


def exceeds(limit: int, in_use: int, delta: int) -> bool:
    """Whether adding `delta` to `in_use` goes past `limit`. Releasing (delta <= 0) never does, so
    that a project already over a lowered limit can always shrink."""
    return limit != UNLIMITED and delta > 0 and in_use + delta > limit


def overs(limits: Counts, usage: Counts, deltas: Counts) -> list[str]:
    """The resources this claim would take past their limits, sorted (Cinder reports the first)."""
    return sorted(
        name
        for name, delta in deltas.items()
        if name in limits and exceeds(limits[name], usage.get(name, 0), delta)
    )


def refusal(name: str, limits: Counts, usage: Counts, deltas: Counts) -> OverLimit:
    """Cinder's 413 for the first exceeded resource: gigabytes in its size wording, counts in
    `VolumeLimitExceeded`'s or `SnapshotLimitExceeded`'s."""
    limit = limits[name]
    if GIGABYTES in name:
        return OverLimit(
            f"Requested volume or snapshot exceeds allowed {name} quota. Requested "
            f"{deltas[name]}G, quota is {limit}G and {usage.get(name, 0)}G has been consumed."
        )
    if name.startswith(SNAPSHOTS):
        return OverLimit(f"Maximum number of snapshots allowed ({limit}) exceeded")
    if name.startswith(VOLUMES):
        return OverLimit(f"Maximum number of volumes allowed ({limit}) exceeded for quota '{name}'.")
    return OverLimit(f"Quota exceeded for resources: ['{name}'].")


def check_claim(limits: Counts, usage: Counts, deltas: Counts) -> None:
    """Raise Cinder's OverLimit if the claim does not fit."""
    over = overs(limits, usage, deltas)
    if over:
        raise refusal(over[0], limits, usage, deltas)


def check_volume_size(limits: Counts, size_gib: int) -> None:
    """`per_volume_gigabytes`: one volume's size (Cinder's VolumeSizeExceedsLimit, 413)."""
    limit = limits.get(PER_VOLUME_GIGABYTES, UNLIMITED)
    if limit != UNLIMITED and size_gib > limit:
        raise OverLimit(f"Requested volume size {size_gib}G is larger than maximum allowed limit {limit}G.")


def volume_deltas(
    type_name: str | None, *, volumes: int = 0, gigabytes: int = 0, snapshots: int = 0
) -> dict[str, int]:
    """A volume claim's deltas: the global counters and, for a typed volume, its type's."""
    deltas = {VOLUMES: volumes, GIGABYTES: gigabytes, SNAPSHOTS: snapshots}
    if type_name is not None:
        deltas.update({per_type(part, type_name): deltas[part] for part in TYPE_PARTS})
    return {k: v for k, v in deltas.items() if v}


# -- requests that set limits ----------------------------------------------------------------------
NON_QUOTA_KEYS = frozenset({"id", "tenant_id"})
"""Keys a quota-set update may carry that are not limits (Cinder ignores them)."""


def parse_limit(key: str, value: object) -> int:
    """A limit as Cinder's `validate_integer` takes it: an integer or a string of one, -1..2^31-1."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise BadRequest(f"Invalid input received: {key} must be an integer, not {value!r}.")
    try:
        number = int(value)
    except ValueError:
        raise BadRequest(f"{key} must be an integer.") from None
    if number < UNLIMITED:
        raise BadRequest(f"Invalid input received: {key} must be >= -1.")
    if number > MAX_LIMIT:
        raise BadRequest(f"Invalid input received: {key} must be <= {MAX_LIMIT}.")
    return number


def parse_quota_set(
    body: Mapping[str, object], resources: ResourceSet, *, what: str = "quota set"
) -> dict[str, int]:
    """The limits a quota-set (or quota-class-set) update asks for: unknown keys are refused all
    at once, as Cinder lists them; every value must be a valid limit."""
    if not body:
        raise BadRequest(f"Invalid input: the {what} must name at least one resource.")
    bad = [k for k in body if k not in resources and k not in NON_QUOTA_KEYS]
    if bad:
        raise BadRequest(f"Invalid input received: Bad key(s) in {what}: {', '.join(bad)}")
    return {k: parse_limit(k, v) for k, v in body.items() if k not in NON_QUOTA_KEYS}


def check_not_below_usage(limits: Counts, usage: Counts) -> None:
    """A new limit must hold what the project already has (-1 always does; a per-request limit
    has no usage). Cinder answers 400."""
    for key, value in limits.items():
        if key in LIMIT_ONLY or value == UNLIMITED:
            continue
        used = usage.get(key, 0)
        if value < used:
            raise BadRequest(
                f"Quota {key} limit must be equal or greater than existing resources. Current "
                f"usage is {used} and the requested limit is {value}."
            )


# -- the absolute-limits view ----------------------------------------------------------------------
ABSOLUTE_LIMITS = {
    "maxTotalVolumes": VOLUMES,
    "maxTotalSnapshots": SNAPSHOTS,
    "maxTotalVolumeGigabytes": GIGABYTES,
    "maxTotalBackups": BACKUPS,
    "maxTotalBackupGigabytes": BACKUP_GIGABYTES,
}
ABSOLUTE_USED = {
    "totalVolumesUsed": VOLUMES,
    "totalGigabytesUsed": GIGABYTES,
    "totalSnapshotsUsed": SNAPSHOTS,
    "totalBackupsUsed": BACKUPS,
    "totalBackupGigabytesUsed": BACKUP_GIGABYTES,
}


def absolute_limits(limits: Counts, usage: Counts) -> dict[str, int]:
    """`GET /limits`' `absolute` object, as Cinder's limits view and used-limits extension make it."""
    shown = {key: limits[name] for key, name in ABSOLUTE_LIMITS.items()}
    shown.update({key: usage.get(name, 0) for key, name in ABSOLUTE_USED.items()})
    return shown
