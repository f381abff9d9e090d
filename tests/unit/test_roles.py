"""`ferry serve --role` and `ferry agent`: bad invocations are refused with one clear line and
exit 1, before anything starts (no traceback, nothing written)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from testkit.server import FerryServer


@pytest.fixture(scope="module")
def sqlite_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return FerryServer(tmp_path_factory.mktemp("roles")).config_path


def ferry(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ferry.cli.main", *args], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("serve", "--role", "api"), "--role api needs PostgreSQL"),
        (("serve", "--role", "conductor"), "--role must be all or api"),
        (("serve", "--workers", "2"), "--workers is for --role api"),
        (("serve", "--role", "api", "--workers", "0"), "Invalid value for '--workers'"),
        (("agent", "--host", "hv1", "--address", "127.0.0.2"), "--role agent needs PostgreSQL"),
        (("agent", "--host", "hv/1", "--address", "127.0.0.2"), "invalid host name"),
        (("agent", "--host", "x" * 53, "--address", "127.0.0.2"), "invalid host name"),
        (("agent", "--host", "hv1", "--address", "hv1.example"), "is not an IP address"),
        (("agent", "--host", "hv1"), "Missing option '--address'"),
    ],
)
def test_a_bad_role_invocation_is_refused_clearly(
    sqlite_config: Path, args: tuple[str, ...], says: str
) -> None:
    before = sqlite_config.read_bytes()
    done = ferry(*args, "--config", str(sqlite_config))
    assert done.returncode != 0
    assert says in done.stdout + done.stderr, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert sqlite_config.read_bytes() == before
