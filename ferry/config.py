"""Ferry's configuration (`ferry.toml`): loading, defaults and writing the default file.

The path comes from `--config`, else `FERRY_CONFIG`, else `./ferry.toml`.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ferry.domain.compute_quotas import COMPUTE_DEFAULTS
from ferry.domain.errors import BadRequest
from ferry.domain.model import BackendConfig, DiskFormat
from ferry.domain.throttle import ThrottleLimits

DEFAULT_PORT = 8776


@dataclass(frozen=True)
class HypervisorConfig:
    driver: str = "qemu"
    qemu: str = "qemu-system-x86_64"
    accel: str = "tcg"
    root_ports: int = 8
    detach_attempts: int = 8
    """How many times a detach asks the guest to release the disk (each waits for it up to 30 s)
    before the volume goes back to `in-use` with the reason, as Nova's device_detach_attempts."""
    detach_wait_s: float = 5.0
    """How long a detach request waits for the guest before it answers 202 and goes on in the
    background (`detaching` until the guest lets go)."""


@dataclass(frozen=True)
class MigrationConfig:
    stall_seconds: float = 3.0
    """Switch the mirror to write-blocking when the remaining dirty bytes have not fallen for this long."""
    ready_timeout_s: float = 3600.0
    default_speed: int = 0
    live_downtime_ms: int = 300
    """The longest pause a server's live migration may take at its switchover (QEMU's downtime-limit)."""
    live_timeout_s: float = 600.0
    """A live migration that has not reached its switchover after this long is rolled back."""
    lease_s: float = 30.0
    """A conductor's hold on a migration it drives, renewed every third of it; once it lapses (the
    conductor died) another conductor takes the migration over through the recovery table."""


@dataclass(frozen=True)
class MessagesConfig:
    ttl_s: int = 2_592_000
    """A user message is kept at least this long (Cinder's `message_ttl`, 30 days): its
    `guaranteed_until`. Expired ones are no longer listed and are purged in the background."""
    purge_every_s: float = 3600.0
    """How often, at most, expired messages are deleted (one indexed DELETE, when a message is left)."""


@dataclass(frozen=True)
class DoctorConfig:
    stuck_after_s: float = 300.0
    """A transitional status unchanged for this long is stuck (`ferry doctor` reports it and
    `--repair` settles it); unfinished or unowned files this old are removed by `--repair`."""


@dataclass(frozen=True)
class IdentityConfig:
    """`[identity]`: password hashing (argon2id) and failed-login throttling.

    The argon2 parameters apply to new hashes; a stored hash carries its own, so hashes made with
    other ones still verify and are rehashed at the user's next successful login. In TOML,
    `password_hashing = "strong" | "light"` picks a profile that the explicit keys override."""

    argon2_time_cost: int = 3
    argon2_memory_cost: int = 65536
    """KiB per hash (64 MiB: argon2-cffi's default, RFC 9106's low-memory profile)."""
    argon2_parallelism: int = 4
    hash_workers: int = 1
    """Threads that hash passwords. Each hash already runs `argon2_parallelism` lane threads, so
    one worker keeps the cores busy; more only add memory and compete with the event loop."""
    hash_nice: int = 19
    """Added to the hash workers' nice value (capped at 19), so that the event loop wins the CPU
    from them: at 19 a lane thread weighs 15 against the loop's 1024, and hashes mostly run on
    what the rest leaves idle. The price: on a host whose cores are saturated (busy guests),
    logins slow down with it. Lower (10: weight 110) favours logins there over the API under a
    login flood (docs/performance.md, figure 8); 0 treats hashes like everything else."""
    max_pending_hashes: int = 16
    """Logins hashing or waiting for a worker; more are refused with 429 until one finishes."""
    user_failures: int = 5
    """Wrong passwords per user name per window before its logins are refused with 429."""
    address_failures: int = 20
    """Wrong passwords per client address per window, whatever the user names."""
    failure_window_s: float = 60.0
    refusal_delay_s: float = 1.0
    """A throttled login waits this long before its 429 (a sleep costs the server nothing): a
    client that retries at once is slowed to one attempt per delay per connection."""
    throttle_max_keys: int = 10_000
    """User names (and, apart, addresses) remembered at most; the oldest are forgotten first."""

    def __post_init__(self) -> None:
        counts = (
            self.argon2_time_cost,
            self.argon2_parallelism,
            self.hash_workers,
            self.max_pending_hashes,
            self.user_failures,
            self.address_failures,
            self.throttle_max_keys,
        )
        if min(counts) < 1 or self.failure_window_s <= 0 or self.refusal_delay_s < 0:
            raise BadRequest(
                "Invalid [identity]: counts must be at least 1, failure_window_s positive and "
                "refusal_delay_s not negative."
            )
        if not 0 <= self.hash_nice <= 19:
            raise BadRequest("Invalid [identity]: hash_nice must be within 0..19.")
        if self.argon2_memory_cost < 8 * self.argon2_parallelism:
            raise BadRequest("Invalid [identity]: argon2_memory_cost must be at least 8 KiB per lane.")

    @property
    def throttle(self) -> ThrottleLimits:
        return ThrottleLimits(
            self.user_failures, self.address_failures, self.failure_window_s, self.throttle_max_keys
        )


@dataclass(frozen=True)
class HostsConfig:
    """`[hosts]`: liveness and what a host offers to scheduling.

    A host whose last heartbeat is older than `service_down_time` is `down` (Nova's default, 60 s);
    agents (and the all-in-one `ferry serve`) beat every `heartbeat_interval`. A host offers
    `vcpus` and `ram_mb` to servers; left out, the machine's own CPUs and RAM times the allocation
    ratios (Nova's historical defaults, 16 and 1.5: guests rarely use all they are given)."""

    service_down_time: float = 60.0
    heartbeat_interval: float = 10.0
    vcpus: int | None = None
    ram_mb: int | None = None
    cpu_allocation_ratio: float = 16.0
    ram_allocation_ratio: float = 1.5

    def __post_init__(self) -> None:
        if not 0 < self.heartbeat_interval < self.service_down_time:
            raise BadRequest("Invalid [hosts]: heartbeat_interval must be positive, below service_down_time.")
        offered = (self.vcpus, self.ram_mb, self.cpu_allocation_ratio, self.ram_allocation_ratio)
        if any(v is not None and v <= 0 for v in offered):
            raise BadRequest("Invalid [hosts]: vcpus, ram_mb and the allocation ratios must be positive.")

    def offered_vcpus(self) -> int:
        if self.vcpus is not None:
            return self.vcpus
        return int((os.cpu_count() or 1) * self.cpu_allocation_ratio)

    def offered_ram_mb(self) -> int:
        if self.ram_mb is not None:
            return self.ram_mb
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024)
        return int(physical * self.ram_allocation_ratio)


@dataclass(frozen=True)
class QuotasConfig:
    """`[quotas]`: every project's default limits (Cinder's `quota_*` options and defaults), until
    an admin sets the `default` quota class or a project's own. -1 is unlimited. Per-type limits
    (`volumes_{type}` …) default to -1 and are set through the API only."""

    volumes: int = 10
    snapshots: int = 10
    gigabytes: int = 1000
    per_volume_gigabytes: int = -1
    backups: int = 10
    backup_gigabytes: int = 1000
    groups: int = 10
    # Nova's (`[quota]` in nova.conf), for the compute API's quotas.
    instances: int = 10
    cores: int = 20
    ram: int = 51200
    key_pairs: int = 100
    metadata_items: int = 128
    server_groups: int = 10
    server_group_members: int = 10
    injected_files: int = 5
    injected_file_content_bytes: int = 10240
    injected_file_path_bytes: int = 255

    def __post_init__(self) -> None:
        if any(not isinstance(v, int) or isinstance(v, bool) or v < -1 for v in self.all().values()):
            raise BadRequest("Invalid [quotas]: every limit must be an integer, -1 (unlimited) or more.")

    def all(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def defaults(self) -> dict[str, int]:
        """The volume (Cinder) defaults."""
        return {k: v for k, v in self.all().items() if k not in COMPUTE_DEFAULTS}

    def compute_defaults(self) -> dict[str, int]:
        """The compute (Nova) defaults."""
        return {k: v for k, v in self.all().items() if k in COMPUTE_DEFAULTS}


PASSWORD_HASHING = {
    "strong": IdentityConfig(),
    # For tests and throw-away demos only: ~1 ms a hash, so cheap to brute-force as well.
    "light": IdentityConfig(argon2_time_cost=1, argon2_memory_cost=1024, argon2_parallelism=1),
}


def password_hashing(profile: str) -> IdentityConfig:
    try:
        return PASSWORD_HASHING[profile]
    except KeyError:
        names = ", ".join(PASSWORD_HASHING)
        raise BadRequest(f"Unknown password_hashing profile {profile!r} (known: {names}).") from None


@dataclass(frozen=True)
class Config:
    data_dir: Path
    database_url: str
    listen_host: str = "127.0.0.1"
    listen_port: int = DEFAULT_PORT
    host_name: str = "ferry"
    token_lifetime_s: int = 3600
    max_body_bytes: int = 1_048_576
    """Request bodies over this are refused with 413 as they stream in."""
    max_image_bytes: int = 16 * 1024**3
    """Image data (`PUT /image/v2/images/{id}/file`, an octet-stream body) has this limit instead."""
    backends: tuple[BackendConfig, ...] = ()
    hypervisor: HypervisorConfig = field(default_factory=HypervisorConfig)
    migration: MigrationConfig = field(default_factory=MigrationConfig)
    doctor: DoctorConfig = field(default_factory=DoctorConfig)
    messages: MessagesConfig = field(default_factory=MessagesConfig)
    identity: IdentityConfig = field(default_factory=IdentityConfig)
    hosts: HostsConfig = field(default_factory=HostsConfig)
    quotas: QuotasConfig = field(default_factory=QuotasConfig)
    guest_dir: Path | None = None
    default_volume_type: str = "__DEFAULT__"
    """The type a volume created without one (and without a source) gets: Cinder's default type."""

    @property
    def public_url(self) -> str:
        return f"http://{self.listen_host}:{self.listen_port}"

    @property
    def run_dir(self) -> Path:
        """Runtime files (QMP sockets, pidfiles, consoles). A unix socket path must fit in 107
        bytes, so a deep data dir gets a short, stable run dir under /run (or the temp dir)."""
        run = self.data_dir / "run"
        if len(str(run)) <= 40:
            return run
        digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:12]
        base = Path("/run") if os.access("/run", os.W_OK) else Path(tempfile.gettempdir())
        return base / f"ferry-{digest}"

    @property
    def images_dir(self) -> Path:
        """Where uploaded image data is stored."""
        return self.data_dir / "images"

    def backend(self, name: str) -> BackendConfig:
        for b in self.backends:
            if b.name == name:
                return b
        raise BadRequest(f"Unknown backend {name!r}.")


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    return Path(explicit or os.environ.get("FERRY_CONFIG") or "ferry.toml")


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'ferry.db'}"


def load(path: Path) -> Config:
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise BadRequest(f"No configuration at {path}: run `ferry init` first.") from None
    except tomllib.TOMLDecodeError as e:
        raise BadRequest(f"Invalid configuration {path}: {e}") from None
    return from_dict(raw, base=path.parent)


def from_dict(raw: dict[str, Any], base: Path = Path(".")) -> Config:
    data_dir = (base / raw.get("data_dir", ".")).resolve()
    backends = tuple(_backend(b, base) for b in raw.get("backends", []))
    names = [b.name for b in backends]
    if len(set(names)) != len(names):
        raise BadRequest("Backend names must be unique.")
    host, _, port = str(raw.get("listen", f"127.0.0.1:{DEFAULT_PORT}")).rpartition(":")
    guest = raw.get("guest_dir")
    default_type = str(raw.get("default_volume_type", "__DEFAULT__")).strip()
    if not 1 <= len(default_type) <= 255:
        raise BadRequest("Invalid default_volume_type: a volume type name of 1 to 255 characters.")
    return Config(
        data_dir=data_dir,
        database_url=os.environ.get("FERRY_DATABASE_URL") or raw.get("database_url") or sqlite_url(data_dir),
        listen_host=host or "127.0.0.1",
        listen_port=int(port),
        host_name=str(raw.get("host_name", "ferry")),
        token_lifetime_s=int(raw.get("token_lifetime_s", 3600)),
        max_body_bytes=int(raw.get("max_body_bytes", 1_048_576)),
        max_image_bytes=int(raw.get("max_image_bytes", 16 * 1024**3)),
        backends=backends,
        hypervisor=HypervisorConfig(**raw.get("hypervisor", {})),
        migration=MigrationConfig(**raw.get("migration", {})),
        doctor=DoctorConfig(**raw.get("doctor", {})),
        messages=_messages(dict(raw.get("messages", {}))),
        identity=_identity(dict(raw.get("identity", {}))),
        hosts=_hosts(dict(raw.get("hosts", {}))),
        quotas=_quotas(dict(raw.get("quotas", {}))),
        guest_dir=(base / guest).resolve() if guest else None,
        default_volume_type=default_type,
    )


def _identity(raw: dict[str, Any]) -> IdentityConfig:
    base = password_hashing(str(raw.pop("password_hashing", "strong")))
    try:
        return replace(base, **raw)
    except TypeError as e:
        raise BadRequest(f"Invalid [identity] section: {e}") from None


def _messages(raw: dict[str, Any]) -> MessagesConfig:
    try:
        m = MessagesConfig(**raw)
    except TypeError as e:
        raise BadRequest(f"Invalid [messages] section: {e}") from None
    if not isinstance(m.ttl_s, int) or m.ttl_s <= 0:
        raise BadRequest("[messages] ttl_s must be a positive number of seconds.")
    return m


def _hosts(raw: dict[str, Any]) -> HostsConfig:
    try:
        return HostsConfig(**raw)
    except TypeError as e:
        raise BadRequest(f"Invalid [hosts] section: {e}") from None


def _quotas(raw: dict[str, Any]) -> QuotasConfig:
    try:
        return QuotasConfig(**raw)
    except TypeError as e:
        raise BadRequest(f"Invalid [quotas] section: {e}") from None


def _reach(raw: dict[str, Any]) -> dict[str, Any]:
    """`hosts = [...]` (reachable from those) or `shared = true` (from every host, the default)."""
    hosts, shared = raw.get("hosts"), raw.get("shared")
    if hosts is None:
        if shared is False:
            raise BadRequest(f"Backend {raw.get('name')}: shared = false needs hosts = [...].")
        return {}
    if shared or not isinstance(hosts, list) or not all(isinstance(h, str) and h for h in hosts):
        raise BadRequest(
            f"Backend {raw.get('name')}: hosts must be a list of host names (and then not shared = true)."
        )
    return {"hosts": tuple(hosts), "shared": False}


def _backend(raw: dict[str, Any], base: Path) -> BackendConfig:
    try:
        b = BackendConfig(
            name=str(raw["name"]),
            path=str((base / raw["path"]).resolve()),
            format=DiskFormat(raw.get("format", "qcow2")),
            capacity_gib=int(raw.get("capacity_gib", 100)),
            oversubscription=float(raw.get("oversubscription", 1.0)),
            driver=str(raw.get("driver", "file")),
            max_migrations=int(raw.get("max_migrations", 2)),
            volume_backend_name=str(raw.get("volume_backend_name", "")),
            **_reach(raw),
        )
    except (KeyError, ValueError) as e:
        raise BadRequest(f"Invalid backend entry {raw!r}: {e}") from None
    if b.driver != "file":
        raise BadRequest(f"Backend {b.name}: unknown driver {b.driver!r} (supported: file).")
    return b


def default_config(data_dir: Path, port: int = DEFAULT_PORT) -> Config:
    data_dir = data_dir.resolve()
    return Config(
        data_dir=data_dir,
        database_url=sqlite_url(data_dir),
        listen_port=port,
        backends=(
            BackendConfig("fast", str(data_dir / "backends" / "fast"), capacity_gib=100),
            BackendConfig("bulk", str(data_dir / "backends" / "bulk"), capacity_gib=500),
        ),
    )


def dump(cfg: Config) -> str:
    """Render a config as TOML (the subset Ferry reads)."""
    lines = [
        f'data_dir = "{cfg.data_dir}"',
        f'database_url = "{cfg.database_url}"',
        f'listen = "{cfg.listen_host}:{cfg.listen_port}"',
        f'host_name = "{cfg.host_name}"',
        f"token_lifetime_s = {cfg.token_lifetime_s}",
        f"max_body_bytes = {cfg.max_body_bytes}",
    ]
    if cfg.guest_dir:
        lines.append(f'guest_dir = "{cfg.guest_dir}"')
    h = cfg.hypervisor
    lines += [
        "",
        "[hypervisor]",
        f'driver = "{h.driver}"',
        f'qemu = "{h.qemu}"',
        f'accel = "{h.accel}"',
        f"root_ports = {h.root_ports}",
    ]
    m = cfg.migration
    lines += [
        "",
        "[migration]",
        f"stall_seconds = {m.stall_seconds}",
        f"ready_timeout_s = {m.ready_timeout_s}",
        f"default_speed = {m.default_speed}",
        f"lease_s = {m.lease_s}",
        "",
        "[doctor]",
        f"stuck_after_s = {cfg.doctor.stuck_after_s}",
        "",
        "[messages]",
        f"ttl_s = {cfg.messages.ttl_s}",
        f"purge_every_s = {cfg.messages.purge_every_s}",
    ]
    i = cfg.identity
    lines += [
        "",
        "[identity]",
        f"argon2_time_cost = {i.argon2_time_cost}",
        f"argon2_memory_cost = {i.argon2_memory_cost}",
        f"argon2_parallelism = {i.argon2_parallelism}",
        f"hash_workers = {i.hash_workers}",
        f"hash_nice = {i.hash_nice}",
        f"max_pending_hashes = {i.max_pending_hashes}",
        f"user_failures = {i.user_failures}",
        f"address_failures = {i.address_failures}",
        f"failure_window_s = {i.failure_window_s}",
        f"refusal_delay_s = {i.refusal_delay_s}",
        f"throttle_max_keys = {i.throttle_max_keys}",
    ]
    hs = cfg.hosts
    lines += [
        "",
        "[hosts]",
        f"service_down_time = {hs.service_down_time}",
        f"heartbeat_interval = {hs.heartbeat_interval}",
        f"cpu_allocation_ratio = {hs.cpu_allocation_ratio}",
        f"ram_allocation_ratio = {hs.ram_allocation_ratio}",
    ]
    lines += [f"{k} = {v}" for k, v in (("vcpus", hs.vcpus), ("ram_mb", hs.ram_mb)) if v is not None]
    if cfg.quotas != QuotasConfig():  # Cinder's defaults need no section (docs/quotas.md)
        lines += ["", "[quotas]", *(f"{k} = {v}" for k, v in cfg.quotas.all().items())]
    for b in cfg.backends:
        lines += [
            "",
            "[[backends]]",
            f'name = "{b.name}"',
            f'driver = "{b.driver}"',
            f'path = "{b.path}"',
            f'format = "{b.format.value}"',
            f"capacity_gib = {b.capacity_gib}",
            f"oversubscription = {b.oversubscription}",
            f"max_migrations = {b.max_migrations}",
            *([f'volume_backend_name = "{b.volume_backend_name}"'] if b.volume_backend_name else []),
            "shared = true" if b.shared else "hosts = [" + ", ".join(f'"{h}"' for h in b.hosts) + "]",
        ]
    return "\n".join(lines) + "\n"
