"""Run a real `ferry serve` for tests, benchmarks and the demo: init a data dir, start the
process, wait until it answers, talk to it as admin/demo/service, stop or kill it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml


def reset_database(url: str) -> None:
    """Give each server a clean PostgreSQL schema (SQLite gets a new file anyway)."""
    if url.startswith("sqlite"):
        return
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as c:
        c.execute(text("DROP SCHEMA public CASCADE"))
        c.execute(text("CREATE SCHEMA public"))
    engine.dispose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Api:
    """A raw HTTP caller with one project-scoped token."""

    base: str
    token: str
    project_id: str
    client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=120))

    def volume(
        self, method: str, path: str, headers: dict[str, str] | None = None, **kw: Any
    ) -> httpx.Response:
        return self.client.request(
            method,
            f"{self.base}/volume/v3/{self.project_id}{path}",
            headers={"X-Auth-Token": self.token, **(headers or {})},
            **kw,
        )

    def compute(
        self, method: str, path: str, headers: dict[str, str] | None = None, **kw: Any
    ) -> httpx.Response:
        return self.client.request(
            method,
            f"{self.base}/compute/v2.1{path}",
            headers={"X-Auth-Token": self.token, **(headers or {})},
            **kw,
        )

    def image(
        self, method: str, path: str, headers: dict[str, str] | None = None, **kw: Any
    ) -> httpx.Response:
        """Glance v2 at /image (`path` from `/v2/…`)."""
        return self.client.request(
            method, f"{self.base}/image{path}", headers={"X-Auth-Token": self.token, **(headers or {})}, **kw
        )

    def ok(self, resp: httpx.Response, *codes: int) -> Any:
        if resp.status_code not in (codes or (200, 202)):
            raise AssertionError(
                f"{resp.request.method} {resp.request.url} → {resp.status_code}: {resp.text}"
            )
        return resp.json() if resp.content else None


class FerryServer:
    def __init__(
        self,
        data_dir: Path,
        *,
        env: dict[str, str] | None = None,
        guest_dir: Path | None = None,
        database_url: str | None = None,
        extra_config: str = "",
        password_hashing: str = "light",
    ) -> None:
        """`password_hashing`: the argon2 profile of `ferry init` ("light" keeps tests fast;
        "strong", the production default, where the cost of a hash is what is measured)."""
        self.data_dir = data_dir
        self.port = free_port()
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.base = f"http://127.0.0.1:{self.port}"
        args = [
            sys.executable,
            "-m",
            "ferry.cli.main",
            "init",
            "--data-dir",
            str(data_dir),
            "--port",
            str(self.port),
            "--password-hashing",
            password_hashing,
        ]
        if guest_dir:
            args += ["--guest-dir", str(guest_dir)]
        if database_url:
            args += ["--database-url", database_url]
        subprocess.run(args, check=True, env=self.env, stdout=subprocess.DEVNULL)
        if extra_config:
            cfg = self.config_path
            cfg.write_text(cfg.read_text() + "\n" + extra_config)
        self.clouds = yaml.safe_load((data_dir / "clouds.yaml").read_text())["clouds"]

    @property
    def config_path(self) -> Path:
        return self.data_dir / "ferry.toml"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "serve.log"

    def start(
        self, env: dict[str, str] | None = None, timeout: float = 30, args: tuple[str, ...] = ()
    ) -> None:
        """`args`: more `ferry serve` options (`--role api --workers 2`)."""
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ferry.cli.main", "serve", "--config", str(self.config_path), *args],
            env={**self.env, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ferry serve exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                if httpx.get(f"{self.base}/identity/v3", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"ferry serve did not answer within {timeout} s: {self.log_tail()}")

    def log_tail(self, n: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-n:] if self.log_path.exists() else ""

    def log_problems(self) -> list[str]:
        """Log lines that show a request failing inside the server: a traceback, an unexpected
        error (HTTP 500) or a 5xx FerryError."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        marks = ("Traceback", "unexpected error", "request failed", "Exception in ASGI application")
        return [line for line in text.splitlines() if any(m in line for m in marks)]

    def wait_exit(self, timeout: float = 60) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL, like a crash: QEMU processes (own sessions) survive."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    def shutdown(self) -> None:
        """Delete every server through the API when the control plane answers, stop it, and kill
        any guest left behind."""
        with contextlib.suppress(httpx.HTTPError, AssertionError):  # the control plane may be dead
            self.delete_servers()
        self.stop()
        self.kill_guests()

    def delete_servers(self) -> None:
        """Delete every server of every project (their guests cost CPU even when idle)."""
        api = self.api("ferry-admin")
        for s in api.ok(api.compute("GET", "/servers", params={"all_tenants": "1"}))["servers"]:
            api.compute("DELETE", f"/servers/{s['id']}")

    def kill_guests(self) -> None:
        """SIGKILL every QEMU this control plane (or one of its agents) started: teardown must
        not leak guests, even when the control plane itself is dead."""
        from ferry.config import load

        run = load(self.config_path).run_dir
        for pidfile in [*run.glob("servers/*/qemu.pid"), *run.glob("hosts/*/servers/*/qemu.pid")]:
            try:
                pid = int(pidfile.read_text().strip())
                if str(pidfile).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGKILL)
            except (OSError, ValueError):
                continue

    def cloud(self, name: str) -> dict[str, Any]:
        return dict(self.clouds[name]["auth"])

    def api(self, cloud: str = "ferry-admin") -> Api:
        auth = self.cloud(cloud)
        body = {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {
                            "name": auth["username"],
                            "domain": {"name": "Default"},
                            "password": auth["password"],
                        }
                    },
                },
                "scope": {"project": {"name": auth["project_name"], "domain": {"name": "Default"}}},
            }
        }
        resp = httpx.post(f"{self.base}/identity/v3/auth/tokens", json=body, timeout=30)
        resp.raise_for_status()
        return Api(self.base, resp.headers["X-Subject-Token"], resp.json()["token"]["project"]["id"])

    def add_user(self, name: str, password: str, project: str, role: str) -> str:
        """Create a user with one role on a project (e.g. a `reader`) straight in the server's
        database, and a cloud of the same name for `api()`/`cloud()`. Returns the cloud name."""
        from ferry import config as cfgmod
        from ferry.db.engine import make_engine, session_factory
        from ferry.domain.roles import Role
        from ferry.services.identity import IdentityService

        cfg = cfgmod.load(self.config_path)
        engine = make_engine(cfg.database_url)
        try:
            db = session_factory(engine)
            ident = IdentityService(db, cfg.token_lifetime_s, cfg.identity)
            with db.begin() as s:
                ident.ensure_user(s, name, password, ident.ensure_project(s, project), Role(role))
        finally:
            engine.dispose()
        auth = {**self.cloud("ferry-admin"), "username": name, "password": password, "project_name": project}
        self.clouds[name] = {**self.clouds["ferry-admin"], "auth": auth}
        return name

    def cli_env(self, cloud: str = "ferry") -> dict[str, str]:
        return {
            **self.env,
            "OS_CLIENT_CONFIG_FILE": str(self.data_dir / "clouds.yaml"),
            "OS_CLOUD": cloud,
            "FERRY_CONFIG": str(self.config_path),
        }
