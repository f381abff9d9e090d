"""Nova's quotas on the shared engine (`domain/quotas.py`): which compute resources a microversion
shows, what a server claims, how Nova words a refusal, and the compute absolute-limits view. Pure.

`instances`, `cores` and `ram` count the project's servers (and their flavors); `key_pairs` is
checked against the caller's own key pairs, as Nova counts them per user; `metadata_items` and
`injected_*` bound one request; `server_groups` and `server_group_members` are shown and may be
set, and nothing uses them (Ferry has no server groups). Below 2.36 Nova also shows the network
quotas of nova-network's days, below 2.57 the injected-file ones: so does Ferry.
"""

from __future__ import annotations

from collections.abc import Mapping

from ferry.domain.errors import BadRequest, Forbidden
from ferry.domain.quotas import UNLIMITED, Counts, ResourceSet, exceeds, parse_limit

INSTANCES, CORES, RAM, KEY_PAIRS, METADATA_ITEMS = "instances", "cores", "ram", "key_pairs", "metadata_items"
SERVER_GROUPS, SERVER_GROUP_MEMBERS = "server_groups", "server_group_members"
INJECTED = ("injected_files", "injected_file_content_bytes", "injected_file_path_bytes")
NETWORK = ("floating_ips", "fixed_ips", "security_groups", "security_group_rules")

COMPUTE_DEFAULTS: dict[str, int] = {
    INSTANCES: 10,
    CORES: 20,
    RAM: 51200,
    KEY_PAIRS: 100,
    METADATA_ITEMS: 128,
    SERVER_GROUPS: 10,
    SERVER_GROUP_MEMBERS: 10,
    "injected_files": 5,
    "injected_file_content_bytes": 10240,
    "injected_file_path_bytes": 255,
}
"""Nova's `[quota]` defaults (`instances`, `cores`, `ram` …)."""
NETWORK_DEFAULTS: dict[str, int] = {
    "floating_ips": 10,
    "fixed_ips": UNLIMITED,
    "security_groups": 10,
    "security_group_rules": 20,
}
"""What Nova showed for the nova-network quotas it dropped at 2.36 (fixed, never enforced)."""
COMPUTE_KEYS = frozenset(COMPUTE_DEFAULTS) | frozenset(NETWORK_DEFAULTS)
COUNTED = (INSTANCES, CORES, RAM)
"""The resources a project's servers hold; the others have no project-wide usage here."""


def compute_resources(defaults: Mapping[str, int], *, networks: bool, injected: bool) -> ResourceSet:
    """The compute resources a microversion shows: network ones below 2.36, injected below 2.57."""
    shown = {k: v for k, v in defaults.items() if injected or k not in INJECTED}
    if networks:
        shown.update(NETWORK_DEFAULTS)
    return ResourceSet(dict(sorted(shown.items())))


def server_deltas(vcpus: int, ram_mb: int, count: int = 1) -> dict[str, int]:
    return {INSTANCES: count, CORES: vcpus * count, RAM: ram_mb * count}


def check_server_claim(limits: Counts, usage: Counts, deltas: Counts) -> None:
    """Nova's TooManyInstances (403) for the first resource the servers would take past its limit."""
    for name in sorted(deltas):
        limit = limits.get(name, UNLIMITED)
        if exceeds(limit, usage.get(name, 0), deltas[name]):
            raise Forbidden(
                f"Quota exceeded for {name}: Requested {deltas[name]}, but already used "
                f"{usage.get(name, 0)} of {limit} {name}"
            )


def check_key_pairs(limit: int, owned: int) -> None:
    """Nova's KeypairLimitExceeded (403) when the user already holds `limit` key pairs."""
    if exceeds(limit, owned, 1):
        raise Forbidden("Quota exceeded, too many key pairs.")


def check_metadata_items(limit: int, count: int) -> None:
    """Nova's MetadataLimitExceeded (403): a server's metadata has at most `limit` items."""
    if exceeds(limit, 0, count):
        raise Forbidden(
            f"Quota exceeded for metadata_items: Maximum number of metadata items exceeds {limit}"
        )


def parse_compute_quota_set(
    body: Mapping[str, object], resources: ResourceSet
) -> tuple[dict[str, int], bool]:
    """A Nova quota-set (or class-set) update: the limits it asks for and its `force` flag. Nova's
    schema refuses unknown keys (400) and takes integers or strings of one, -1..2^31-1."""
    bad = sorted(k for k in body if k not in resources and k != "force")
    if bad:
        listed = ", ".join(f"'{k}'" for k in bad)
        raise BadRequest(
            f"Invalid input for field/attribute quota_set. Additional properties are not allowed "
            f"({listed} {'was' if len(bad) == 1 else 'were'} unexpected)"
        )
    force = body.get("force", False)
    if isinstance(force, str) and force.lower() in ("true", "false", "1", "0", "yes", "no", "on", "off"):
        force = force.lower() in ("true", "1", "yes", "on")
    if not isinstance(force, bool):
        raise BadRequest("Invalid input for field/attribute force. Value: not a boolean.")
    return {k: parse_limit(k, v) for k, v in body.items() if k != "force"}, force


def check_not_below_used(limits: Counts, usage: Counts) -> None:
    """Nova (without `force`): a new limit holds what the project already uses (400)."""
    for key, value in limits.items():
        used = usage.get(key, 0)
        if value != UNLIMITED and value < used:
            raise BadRequest(
                f"Quota limit {value} for {key} must be greater than or equal to already used and "
                f"reserved {used}."
            )


# -- Nova's absolute limits ------------------------------------------------------------------------
ABSOLUTE = {
    "maxTotalInstances": INSTANCES,
    "maxTotalCores": CORES,
    "maxTotalRAMSize": RAM,
    "maxServerMeta": METADATA_ITEMS,
    "maxTotalKeypairs": KEY_PAIRS,
    "maxServerGroups": SERVER_GROUPS,
    "maxServerGroupMembers": SERVER_GROUP_MEMBERS,
}
ABSOLUTE_INJECTED = {
    "maxPersonality": "injected_files",
    "maxPersonalitySize": "injected_file_content_bytes",
}
ABSOLUTE_NETWORK = {
    "maxTotalFloatingIps": "floating_ips",
    "maxSecurityGroups": "security_groups",
    "maxSecurityGroupRules": "security_group_rules",
}
USED = {"totalInstancesUsed": INSTANCES, "totalCoresUsed": CORES, "totalRAMUsed": RAM}
USED_NETWORK = ("totalFloatingIpsUsed", "totalSecurityGroupsUsed")
IMAGE_META_LIMIT = 128
"""`maxImageMeta`, shown below 2.39 (Nova: the metadata_items limit, in Glance's keeping)."""


def absolute_compute_limits(
    limits: Counts, usage: Counts, *, networks: bool, injected: bool, image_meta: bool
) -> dict[str, int]:
    """`GET /compute/v2.1/limits`' `absolute`, as Nova's limits view shows it at a microversion."""
    names = dict(ABSOLUTE)
    if injected:
        names.update(ABSOLUTE_INJECTED)
    if networks:
        names.update(ABSOLUTE_NETWORK)
    shown = {key: limits.get(name, NETWORK_DEFAULTS.get(name, UNLIMITED)) for key, name in names.items()}
    if image_meta:
        shown["maxImageMeta"] = limits.get(METADATA_ITEMS, IMAGE_META_LIMIT)
    shown.update({key: usage.get(name, 0) for key, name in USED.items()})
    shown["totalServerGroupsUsed"] = 0
    if networks:
        shown.update(dict.fromkeys(USED_NETWORK, 0))
    return shown
