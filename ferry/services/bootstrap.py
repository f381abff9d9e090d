"""`ferry init`: write the default config, create the schema, bootstrap identity and catalog data."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, replace
from pathlib import Path

import yaml
from sqlalchemy.orm import Session

from ferry import config as cfgmod
from ferry.config import Config
from ferry.db.engine import make_engine, session_factory, upgrade
from ferry.db.models import Flavor
from ferry.domain.roles import Role
from ferry.services.identity import IdentityService

FLAVORS = (("1", "tiny", 1, 256), ("2", "small", 1, 512), ("3", "medium", 2, 1024))


@dataclass(frozen=True)
class Credentials:
    admin: str
    service: str
    demo: str


def init(
    data_dir: Path,
    port: int = cfgmod.DEFAULT_PORT,
    database_url: str | None = None,
    guest_dir: Path | None = None,
    password_hashing: str = "strong",
) -> tuple[Path, Config]:
    """`password_hashing` names the argon2 profile written to `[identity]` and used for the
    bootstrap users' hashes: "strong" (the default), or "light" for tests only."""
    identity = cfgmod.password_hashing(password_hashing)
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    cfg = replace(cfgmod.default_config(data_dir, port), identity=identity)
    if database_url:
        cfg = replace(cfg, database_url=database_url)
    if guest_dir:
        cfg = replace(cfg, guest_dir=guest_dir.resolve())
    path = data_dir / "ferry.toml"
    path.write_text(cfgmod.dump(cfg))
    path.chmod(0o600)  # a PostgreSQL URL may carry a password
    creds = Credentials(secrets.token_urlsafe(16), secrets.token_urlsafe(16), secrets.token_urlsafe(16))
    setup_database(cfg, creds)
    write_clouds_yaml(cfg, creds)
    return path, cfg


def setup_database(cfg: Config, creds: Credentials) -> None:
    upgrade(cfg.database_url, host_name=cfg.host_name)
    if cfg.database_url.startswith("sqlite:///"):
        Path(cfg.database_url.removeprefix("sqlite:///")).chmod(0o600)  # password hashes, tokens
    engine = make_engine(cfg.database_url)
    db = session_factory(engine)
    ident = IdentityService(db, cfg.token_lifetime_s, cfg.identity)
    with db.begin() as s:
        admin_p = ident.ensure_project(s, "admin")
        service_p = ident.ensure_project(s, "service")
        demo_p = ident.ensure_project(s, "demo")
        s.flush()
        ident.ensure_user(s, "admin", creds.admin, admin_p, Role.ADMIN)
        ident.ensure_user(s, "ferry-service", creds.service, service_p, Role.SERVICE)
        ident.ensure_user(s, "demo", creds.demo, demo_p, Role.MEMBER)
        _flavors(s)
    engine.dispose()


def _flavors(s: Session) -> None:
    for fid, name, vcpus, ram in FLAVORS:
        if s.get(Flavor, fid) is None:
            s.add(Flavor(id=fid, name=name, vcpus=vcpus, ram_mb=ram, disk_gib=0))


def write_clouds_yaml(cfg: Config, creds: Credentials) -> Path:
    def cloud(user: str, password: str, project: str) -> dict[str, object]:
        return {
            "auth": {
                "auth_url": f"{cfg.public_url}/identity/v3",
                "username": user,
                "password": password,
                "project_name": project,
                "user_domain_name": "Default",
                "project_domain_name": "Default",
            },
            "region_name": "RegionOne",
            "identity_api_version": 3,
            "interface": "public",
        }

    doc = {
        "clouds": {
            "ferry": cloud("admin", creds.admin, "admin"),
            "ferry-admin": cloud("admin", creds.admin, "admin"),
            "ferry-demo": cloud("demo", creds.demo, "demo"),
            "ferry-service": cloud("ferry-service", creds.service, "service"),
        }
    }
    path = cfg.data_dir / "clouds.yaml"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(doc, f, sort_keys=False)
    os.chmod(path, 0o600)
    return path
