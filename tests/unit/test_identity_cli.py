"""The unmodified `openstack` command line (python-openstackclient) against a real `ferry serve`:
an admin creates a project and a user, grants a role, lists assignments with names; the user logs
in, changes nothing they may not, makes an application credential, and an `openstack` run that
logs in with it (`v3applicationcredential`) lists volumes."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from testkit.server import FerryServer
from tests.conftest import fake_hypervisor_server

pytestmark = pytest.mark.db

OPENSTACK = str(Path(sys.executable).with_name("openstack"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FerryServer]:
    yield from fake_hypervisor_server(tmp_path_factory.mktemp("ferry"))


class Clouds:
    """A clouds.yaml of the server's clouds and the ones a test adds."""

    def __init__(self, server: FerryServer, path: Path) -> None:
        self.server, self.path = server, path
        self.clouds: dict[str, Any] = dict(server.clouds)
        self._write()

    def add(self, name: str, auth: dict[str, Any], auth_type: str | None = None) -> None:
        base = self.server.clouds["ferry-admin"]
        cloud = {**base, "auth": {"auth_url": base["auth"]["auth_url"], **auth}}
        if auth_type:
            cloud["auth_type"] = auth_type
        self.clouds[name] = cloud
        self._write()

    def _write(self) -> None:
        self.path.write_text(yaml.safe_dump({"clouds": self.clouds}))

    def run(self, cloud: str, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        env = {**self.server.cli_env(cloud), "OS_CLIENT_CONFIG_FILE": str(self.path)}
        result = subprocess.run(
            [OPENSTACK, *args], env=env, capture_output=True, text=True, timeout=180, check=False
        )
        assert (result.returncode == 0) == ok, (args, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
        return result

    def json(self, cloud: str, *args: str) -> Any:
        return json.loads(self.run(cloud, *args, "-f", "json").stdout)


def test_openstack_cli_users_roles_and_application_credentials(server: FerryServer, tmp_path: Path) -> None:
    clouds = Clouds(server, tmp_path / "clouds.yaml")
    suffix = uuid.uuid4().hex[:6]
    project, user = f"team-{suffix}", f"alice-{suffix}"

    clouds.json("ferry-admin", "project", "create", "--description", "a team", project)
    created = clouds.json("ferry-admin", "user", "create", "--password", "pw-1", "--project", project, user)
    assert created["name"] == user and created["enabled"] is True
    clouds.run("ferry-admin", "role", "add", "--user", user, "--project", project, "member")
    assert user in [u["Name"] for u in clouds.json("ferry-admin", "user", "list")]
    assert clouds.json("ferry-admin", "user", "show", user)["id"] == created["id"]
    assert "member" in [r["Name"] for r in clouds.json("ferry-admin", "role", "list")]

    listed = clouds.json("ferry-admin", "role", "assignment", "list", "--names", "--user", user)
    assert [(a["Role"], a["User"], a["Project"]) for a in listed] == [
        ("member", f"{user}@Default", f"{project}@Default")
    ]
    by_project = clouds.json("ferry-admin", "role", "assignment", "list", "--project", project)
    assert [a["User"] for a in by_project] == [created["id"]]
    clouds.run("ferry-admin", "project", "set", "--description", "renamed team", project)
    assert clouds.json("ferry-admin", "project", "show", project)["description"] == "renamed team"

    clouds.add(
        user,
        {
            "username": user,
            "password": "pw-1",
            "project_name": project,
            "user_domain_name": "Default",
            "project_domain_name": "Default",
        },
    )
    assert clouds.json(user, "token", "issue")["user_id"] == created["id"]
    assert clouds.json(user, "volume", "list") == []
    denied = clouds.run(user, "user", "list", ok=False)
    assert "403" in denied.stderr or "not allow" in denied.stderr

    cred = clouds.json(user, "application", "credential", "create", "--role", "reader", "ci")
    assert cred["Secret"] and [r["name"] for r in cred["Roles"]] == ["reader"]
    shown = clouds.json(user, "application", "credential", "show", "ci")
    assert shown["ID"] == cred["ID"] and not shown.get("Secret")
    assert [c["Name"] for c in clouds.json(user, "application", "credential", "list")] == ["ci"]
    clouds.add(
        "ci",
        {"application_credential_id": cred["ID"], "application_credential_secret": cred["Secret"]},
        "v3applicationcredential",
    )
    assert clouds.json("ci", "volume", "list") == []
    clouds.run(user, "application", "credential", "delete", "ci")
    clouds.run("ci", "volume", "list", ok=False)

    clouds.run("ferry-admin", "user", "set", "--password", "pw-2", user)
    clouds.run(user, "token", "issue", ok=False)
    clouds.add(user, {**clouds.clouds[user]["auth"], "password": "pw-2"})
    clouds.run(user, "token", "issue")
    clouds.run("ferry-admin", "role", "remove", "--user", user, "--project", project, "member")
    assert clouds.json("ferry-admin", "role", "assignment", "list", "--user", user) == []
    clouds.run("ferry-admin", "user", "delete", user)
    assert user not in [u["Name"] for u in clouds.json("ferry-admin", "user", "list")]
    assert clouds.json("ferry-admin", "catalog", "list")
    assert {s["Type"] for s in clouds.json("ferry-admin", "service", "list")} >= {"identity", "volumev3"}
    assert clouds.json("ferry-admin", "endpoint", "list")
    clouds.run("ferry-admin", "project", "delete", project)
