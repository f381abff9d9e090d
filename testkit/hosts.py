"""Many hosts on this machine, for tests, benchmarks and the multi-host demo: a `ferry serve
--role api` tier over PostgreSQL (`FerryServer` with role arguments) and `ferry agent` processes,
each with its own host name, run directory and loopback address (127.0.0.2, 127.0.0.3, …)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ferry.config import load
from testkit.server import Api, FerryServer

API_TIER = ("--role", "api", "--workers", "2")


class AgentProcess:
    """One `ferry agent --host NAME --address IP` of a deployment."""

    def __init__(self, srv: FerryServer, name: str, address: str) -> None:
        self.srv, self.name, self.address = srv, name, address
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.srv.data_dir / f"agent-{self.name}.log"

    @property
    def run_dir(self) -> Path:
        return load(self.srv.config_path).run_dir / "hosts" / self.name

    def start(self, timeout: float = 60) -> None:
        """Start it and wait until it serves its host (its log says so once it has re-adopted
        its QEMUs and holds the host)."""
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        args = [
            "agent",
            "--host",
            self.name,
            "--address",
            self.address,
            "--config",
            str(self.srv.config_path),
        ]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ferry.cli.main", *args],
            env=self.srv.env,
            stdout=self.log_path.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while f"serving host {self.name}" not in self._log_since(offset):
            if self.proc.poll() is not None:
                raise RuntimeError(f"agent {self.name} exited with {self.proc.returncode}: {self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"agent {self.name} did not start within {timeout} s: {self.log_tail()}")
            time.sleep(0.1)

    def _log_since(self, offset: int) -> str:
        with self.log_path.open("rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")

    def log_tail(self, n: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-n:] if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL, like a crash: its QEMU processes (own sessions) survive."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    def qemu_pids(self) -> dict[str, int]:
        """Server id -> pid of each QEMU this host's agent runs (by pidfile, checked alive)."""
        out: dict[str, int] = {}
        for pidfile in self.run_dir.glob("servers/*/qemu.pid"):
            try:
                pid = int(pidfile.read_text().strip())
                os.kill(pid, 0)
            except (OSError, ValueError):
                continue
            out[pidfile.parent.name] = pid
        return out


def api_workers(srv: FerryServer) -> list[int]:
    """The pids of the API tier's worker processes (children of `ferry serve --role api`)."""
    assert srv.proc is not None
    children = Path(f"/proc/{srv.proc.pid}/task/{srv.proc.pid}/children").read_text().split()
    return [int(pid) for pid in children]


def boot_on(api: Api, image: str, name: str, host: str, flavor: str = "tiny") -> str:
    """Boot a server on `host` (Nova microversion 2.74's `host` field, admin only; Ferry takes
    it at every compute microversion it offers)."""
    from testkit.scenario import server, wait_until

    body = {"server": {"name": name, "imageRef": image, "flavorRef": flavor, "host": host}}
    sid = str(api.ok(api.compute("POST", "/servers", json=body), 202)["server"]["id"])
    wait_until(f"server {sid} ACTIVE", lambda: server(api, sid)["status"] == "ACTIVE", timeout=120)
    return sid


def conductor_of_table(srv: FerryServer, table: str, migration_id: str) -> str:
    """The conductor holding the lease on a volume (`migrations`) or server
    (`server_live_migrations`) migration: `host:pid:token`."""
    from sqlalchemy import create_engine, text

    if table not in ("migrations", "server_live_migrations"):
        raise ValueError(f"no leases in {table}")
    engine = create_engine(load(srv.config_path).database_url)
    try:
        with engine.connect() as c:
            query = text(f"SELECT conductor FROM {table} WHERE id = :i")
            return str(c.execute(query, {"i": migration_id}).scalar())
    finally:
        engine.dispose()
