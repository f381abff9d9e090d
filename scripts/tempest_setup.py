"""The stage around one tempest run (`scripts/tempest.sh`): a throw-away `ferry serve` with the test
guest registered, tempest's pre-provisioned accounts created straight in its database, a
`tempest.conf` written against it, the given tempest command run, and the server stopped with its
QEMU guests reaped, whatever happens.

It measures Ferry; it must not change it: no import from ferry/ beyond what `testkit` already
uses, and every option tempest is given either follows from what the server advertises or names a
feature Ferry does not offer.
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from testkit.scenario import register_guest  # noqa: E402
from testkit.server import FerryServer  # noqa: E402

BACKENDS = ("fast", "bulk")
"""The two backends `ferry init` configures (`[volume] backend_names`)."""
EXTEND_ATTACHED = (3, 42)
"""The volume microversion of extending an attached volume: tempest tests it once Ferry advertises it."""


@dataclass(frozen=True)
class Account:
    """One pre-provisioned tempest account: a Ferry user with one role on one project."""

    username: str
    project: str
    role: str
    password: str

    def entry(self) -> dict[str, Any]:
        """The account as tempest's accounts file spells it."""
        return {
            "username": self.username,
            "project_name": self.project,
            "password": self.password,
            "user_domain_name": "Default",
            "project_domain_name": "Default",
            "roles": [self.role],
        }


def accounts_for(workers: int) -> list[Account]:
    """One set per tempest worker (tempest locks an account while a test class holds it): an
    admin, a member, a second member in another project (tempest's "alt") and a reader in the
    member's project (tempest takes the project reader from the project member's project).

    The order matters to tempest's allocation: alt is the first free non-admin account in file
    order, so the alt members come first and never take a member whose project has the reader;
    a primary member prefers the projects with a reader, so it never lands in an alt project."""

    def acct(name: str, project: str, role: str) -> Account:
        return Account(name, project, role, secrets.token_urlsafe(12))

    sets = range(1, workers + 1)
    return [
        *(acct(f"tempest-admin-{i}", f"tempest-admin-{i}", "admin") for i in sets),
        *(acct(f"tempest-alt-{i}", f"tempest-alt-{i}", "member") for i in sets),
        *(acct(f"tempest-member-{i}", f"tempest-{i}", "member") for i in sets),
        *(acct(f"tempest-reader-{i}", f"tempest-{i}", "reader") for i in sets),
    ]


def microversions(base: str, service: str) -> tuple[str, str]:
    """(min, max) from Ferry's discovery document of `service` ("volume", "compute"), whatever
    its status (Cinder answers 300 Multiple Choices)."""
    body = httpx.get(f"{base}/{service}/", timeout=30).json()
    versions = body["versions"]
    current = next(v for v in versions if v.get("status") == "CURRENT") if len(versions) > 1 else versions[0]
    return str(current["min_version"]), str(current["version"])


def catalog_types(srv: FerryServer) -> set[str]:
    """The service types in the catalog of an admin's token: what tempest may claim is there."""
    api = srv.api("ferry-admin")
    body = httpx.get(
        f"{srv.base}/identity/v3/auth/catalog", headers={"X-Auth-Token": api.token}, timeout=30
    ).json()
    return {entry["type"] for entry in body["catalog"]}


def _at_least(version: str, wanted: tuple[int, int]) -> bool:
    major, minor = version.split(".")
    return (int(major), int(minor)) >= wanted


def tempest_conf(
    srv: FerryServer, ws: Path, accounts_file: Path, images: tuple[str, str], neutron: bool = False
) -> str:
    """`neutron`: claim Neutron, so that tempest runs the classes it skips without one
    (`create_default_network`: attach, snapshot, volume actions); Ferry's servers need no network."""
    lo, hi = microversions(srv.base, "volume")
    compute_lo, compute_hi = microversions(srv.base, "compute")
    glance = "image" in catalog_types(srv)
    admin = srv.cloud("ferry-admin")
    flags = {
        # Features Ferry does not offer (docs/conformance.md): their tests skip themselves.
        "backup": False,
        "manage_volume": False,
        "manage_snapshot": False,
        "replication": False,
        "extend_attached_encrypted_volume": False,
        # Features Ferry offers.
        "multi_backend": True,
        "snapshot": True,
        "clone": True,
        "extend_attached_volume": _at_least(hi, EXTEND_ATTACHED),
    }
    sections: dict[str, dict[str, Any]] = {
        "DEFAULT": {"log_file": ws / "tempest.log"},
        "oslo_concurrency": {"lock_path": ws / "locks"},
        "auth": {
            "use_dynamic_credentials": False,
            "test_accounts_file": accounts_file,
            "default_credentials_domain_name": "Default",
            "create_isolated_networks": False,
            # Tempest's admin identity tests always make throw-away projects and users
            # (`force_tenant_isolation`): as this admin, through Ferry's Keystone API.
            "admin_username": admin["username"],
            "admin_password": admin["password"],
            "admin_project_name": admin["project_name"],
            "admin_domain_name": "Default",
        },
        "identity": {"uri_v3": f"{srv.base}/identity/v3", "auth_version": "v3", "region": "RegionOne"},
        # Ferry's Keystone has no trusts, no access rules and none of Keystone's extensions
        # (OS-OAUTH1, OS-EC2, OS-EP-FILTER, OS-INHERIT, OS-TRUST): docs/identity.md.
        "identity-feature-enabled": {"trust": False, "access_rules": False, "api_extensions": ""},
        "service_available": {
            "cinder": True,
            "nova": True,
            "glance": glance,
            "neutron": neutron,
            "swift": False,
        },
        "volume": {
            "backend_names": ",".join(BACKENDS),
            "min_microversion": lo,
            "max_microversion": hi,
            "build_timeout": 120,
            # What Ferry's pools report (`get_pools?detail=true`): tempest compares them.
            "vendor_name": "Ferry",
            "storage_protocol": "file",
        },
        "volume-feature-enabled": flags,
        "compute": {
            "image_ref": images[0],
            "image_ref_alt": images[1],
            "flavor_ref": "1",
            "flavor_ref_alt": "2",
            "min_microversion": compute_lo,
            "max_microversion": compute_hi,
            "build_timeout": 180,
        },
        # Ferry's servers cannot be shelved (no image service to shelve them to).
        "compute-feature-enabled": {"attach_encrypted_volume": False, "swap_volume": True, "shelve": False},
        "validation": {"run_validation": False},
        # What Ferry's image service takes (`ferry.domain.images`): tempest creates with the first.
        "image": {
            "container_formats": "bare,ami,ari,aki,ovf,ova",
            "disk_formats": "qcow2,raw,ami,ari,aki,vhd,vmdk,vdi,iso,vhdx",
        },
        "image-feature-enabled": {"import_image": False, "os_glance_reserved": False},
        # Cinder's secure RBAC: reads go through the project reader. Off, tempest 47 builds some
        # classes' reader image client from `images_client`, which exists only with Glance.
        "enforce_scope": {"cinder": True},
    }
    return "\n".join(_section(name, opts) for name, opts in sections.items())


def _section(name: str, opts: dict[str, Any]) -> str:
    def value(v: Any) -> str:
        return str(v).lower() if isinstance(v, bool) else str(v)

    return "\n".join([f"[{name}]", *(f"{k} = {value(v)}" for k, v in opts.items()), ""])


def inventory(srv: FerryServer) -> dict[str, int]:
    """What tempest must leave as it found it: volumes (every project's), snapshots, types."""
    api = srv.api("ferry-admin")
    everyone = {"all_tenants": "1"}
    return {
        "volumes": len(api.ok(api.volume("GET", "/volumes", params=everyone))["volumes"]),
        "snapshots": len(api.ok(api.volume("GET", "/snapshots", params=everyone))["snapshots"]),
        "types": len(api.ok(api.volume("GET", "/types"))["volume_types"]),
    }


def stage(data: Path, guest_dir: Path, workers: int) -> tuple[FerryServer, list[Account], tuple[str, str]]:
    """A fresh, not yet started server with the test guest (twice: tempest's image_ref and
    image_ref_alt) and tempest's accounts, created straight in its database."""
    shutil.rmtree(data, ignore_errors=True)
    data.parent.mkdir(parents=True, exist_ok=True)
    srv = FerryServer(data, guest_dir=guest_dir, password_hashing="light")
    images = (
        register_guest(srv, guest_dir, "tempest-guest"),
        register_guest(srv, guest_dir, "tempest-guest-alt"),
    )
    accounts = accounts_for(workers)
    for a in accounts:
        srv.add_user(a.username, a.password, a.project, a.role)
    return srv, accounts, images


def write_config(
    srv: FerryServer, ws: Path, accounts: list[Account], images: tuple[str, str], neutron: bool
) -> None:
    """tempest.conf and the accounts file in the workspace's etc/, against the running server."""
    accounts_file = ws / "etc" / "accounts.yaml"
    accounts_file.parent.mkdir(parents=True, exist_ok=True)
    accounts_file.write_text(yaml.safe_dump([a.entry() for a in accounts], sort_keys=False))
    (ws / "etc" / "tempest.conf").write_text(tempest_conf(srv, ws, accounts_file, images, neutron))
    shutil.rmtree(ws / "locks", ignore_errors=True)  # an aborted run's account locks


def _stop_on_term(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through `finally`: the server and its guests go too


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", type=Path, default=ROOT / "build" / "tempest" / "ferry")
    parser.add_argument("--guest-dir", type=Path, default=ROOT / "build" / "guest")
    parser.add_argument("--workspace", type=Path, default=ROOT / "build" / "tempest" / "workspace")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--neutron", action="store_true", help="claim Neutron (see tempest_conf)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- the tempest command to run")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    signal.signal(signal.SIGTERM, _stop_on_term)
    ws = args.workspace.resolve()
    srv, accounts, images = stage(args.data_dir.resolve(), args.guest_dir.resolve(), args.workers)
    try:
        srv.start()
        write_config(srv, ws, accounts, images, args.neutron)
        return measure(srv, command, ws)
    finally:
        srv.shutdown()


def measure(srv: FerryServer, command: list[str], cwd: Path) -> int:
    """Run `command` against the staged server; say what it left behind and what the server
    logged as failing. Returns the command's exit status."""
    pid = srv.proc.pid if srv.proc else "?"
    before = inventory(srv)
    print(f"ferry serve at {srv.base} (pid {pid}); before: {before}", flush=True)
    rc = subprocess.run(command, cwd=cwd, check=False).returncode if command else 0
    after = inventory(srv)
    left = {k: after[k] - before[k] for k in before if after[k] != before[k]}
    print(f"after: {after}; left behind: {left or 'nothing'}", flush=True)
    problems = srv.log_problems()
    print(f"server log: {len(problems)} problem line(s) (5xx, tracebacks) in {srv.log_path}", flush=True)
    # Conformance is also what a run leaves: tempest must clean up after itself, and Ferry must
    # answer every request without a 5xx or a traceback.
    return rc or (1 if left or problems else 0)


if __name__ == "__main__":
    sys.exit(main())
