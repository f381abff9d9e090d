"""The `ferry` command line as a user runs it (`python -m ferry.cli.main`, credentials from the
clouds.yaml `ferry init` wrote) against a real `ferry serve`: round trips with `-f json`, and
failures that end with exit code 1 and one line on stderr, never a traceback. The console and
migration-summary commands are also driven in-process against a stub `Client` that records calls
(their endpoints and step-log kinds are contracts the server side is built to)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from typer.testing import CliRunner

from ferry.cli import main as cli_main
from ferry.cli import migrations, servers
from ferry.cli.client import CliError
from testkit.server import FerryServer, free_port

pytestmark = pytest.mark.db


@pytest.fixture(scope="module", autouse=True)
def no_server_errors(server: FerryServer) -> Iterator[None]:
    yield
    assert server.log_problems() == []


def cli(
    server: FerryServer,
    *args: str,
    cloud: str = "ferry",
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ferry.cli.main", *args],
        env=env or server.cli_env(cloud),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def ok_json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def failed(result: subprocess.CompletedProcess[str]) -> str:
    """Exit code 1 and exactly one line `error: …` on stderr; returns that line."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def in_parallel(server: FerryServer, *calls: tuple[tuple[str, ...], dict[str, Any]]) -> list[Any]:
    """Run independent CLI calls side by side (each one is a fresh Python process)."""
    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(lambda c: cli(server, *c[0], **c[1]), calls))


def test_volume_round_trip(server: FerryServer) -> None:
    vol = ok_json(cli(server, "volume", "create", "cli-vol", "--size", "1", "-f", "json"))
    assert (vol["name"], vol["size"], vol["status"]) == ("cli-vol", 1, "available")
    vid = vol["id"]
    shown = ok_json(cli(server, "volume", "show", vid, "-f", "json"))
    assert shown["id"] == vid and shown["os-vol-host-attr:host"] == "ferry@bulk#bulk"
    api = server.api("ferry-admin")
    assert vid in [v["id"] for v in api.ok(api.volume("GET", "/volumes"))["volumes"]]

    deleted = cli(server, "volume", "delete", "cli-vol")  # by name
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout.strip() == f"deleted volume {vid}"
    assert api.volume("GET", f"/volumes/{vid}").status_code == 404
    line = failed(cli(server, "volume", "show", vid, "-f", "json"))
    assert vid in line


def test_snapshot_round_trip(server: FerryServer) -> None:
    api = server.api("ferry-admin")
    body = {"volume": {"size": 1, "name": "cli-snapped"}}
    vid = api.ok(api.volume("POST", "/volumes", json=body), 202)["volume"]["id"]
    snap = ok_json(cli(server, "snapshot", "create", "cli-snapped", "--name", "cli-snap", "-f", "json"))
    assert (snap["volume_id"], snap["name"], snap["status"]) == (vid, "cli-snap", "available")
    listed = ok_json(cli(server, "snapshot", "list", "--volume", vid, "-f", "json"))
    assert [s["id"] for s in listed] == [snap["id"]]
    deleted = cli(server, "snapshot", "delete", "cli-snap")  # by name; waits until it is gone
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout.strip() == f"deleted snapshot {snap['id']}"
    assert api.volume("GET", f"/snapshots/{snap['id']}").status_code == 404
    assert api.ok(api.volume("GET", "/snapshots", params={"volume_id": vid}))["snapshots"] == []


def test_types_and_backends(server: FerryServer) -> None:
    created, backends = in_parallel(
        server,
        (("type", "create", "cli-fast", "--backend", "fast", "--description", "pinned", "-f", "json"), {}),
        (("backend", "list", "-f", "json"), {}),
    )
    vt = ok_json(created)
    assert (vt["name"], vt["description"], vt["extra_specs"]) == (
        "cli-fast",
        "pinned",
        {"volume_backend_name": "fast"},
    )
    pools = ok_json(backends)
    assert sorted(p["name"] for p in pools) == ["ferry@bulk#bulk", "ferry@fast#fast"]
    capacity = {
        p["capabilities"]["volume_backend_name"]: p["capabilities"]["total_capacity_gb"] for p in pools
    }
    assert capacity == {"fast": 100, "bulk": 500}

    types = ok_json(cli(server, "type", "list", "-f", "json"))
    assert [t["extra_specs"] for t in types if t["id"] == vt["id"]] == [{"volume_backend_name": "fast"}]


def write_clouds(tmp: Path, server: FerryServer, **auth: str) -> dict[str, str]:
    tmp.mkdir(exist_ok=True)
    cloud = {"auth": {**server.cloud("ferry-admin"), **auth}, "region_name": "RegionOne"}
    path = tmp / "clouds.yaml"
    path.write_text(yaml.safe_dump({"clouds": {"custom": cloud}}))
    return {**server.cli_env(), "OS_CLIENT_CONFIG_FILE": str(path), "OS_CLOUD": "custom"}


def test_failures_are_one_line_and_names_are_data(server: FerryServer, tmp_path: Path) -> None:
    """Failures: exit code 1 and one `error:` line, whatever the message holds (long, or looking
    like Rich markup). Success: a name that looks like markup is printed as it is, in tables too."""
    no_creds = {k: v for k, v in server.cli_env().items() if k != "OS_CLOUD" and not k.startswith("OS_AUTH")}
    unreachable = write_clouds(tmp_path, server, auth_url=f"http://127.0.0.1:{free_port()}/identity/v3")
    cases: list[tuple[tuple[str, ...], dict[str, Any], str]] = [
        (("volume", "create", "zero", "--size", "0"), {}, "Invalid size 0"),
        (("type", "create", "t" * 300), {}, "at most 255 characters (HTTP 400)"),  # longer than a terminal
        (
            ("volume", "create", "x", "--size", "1", "--type", "[red]nope[/red] " + "y" * 100),
            {"cloud": "ferry-demo"},
            "Volume type [red]nope[/red] " + "y" * 100 + " could not be found. (HTTP 404)",
        ),
        (("volume", "list"), {"env": no_creds}, "No credentials"),
        (("volume", "list"), {"env": unreachable}, "Cannot reach Ferry"),
    ]
    name = "[/b][bold]x"
    api = server.api("ferry-admin")
    vid = api.ok(api.volume("POST", "/volumes", json={"volume": {"size": 1, "name": name}}), 202)["volume"][
        "id"
    ]
    wide = {**server.cli_env(), "COLUMNS": "300"}
    shows = [(("volume", "list"), {"env": wide}), (("volume", "show", vid), {"env": wide})]
    *results, table, shown = in_parallel(server, *[c[:2] for c in cases], *shows)
    for (args, _, expected), result in zip(cases, results, strict=True):
        line = failed(result)
        assert expected in line, (args, line)
    for result in (table, shown):
        assert result.returncode == 0, result.stderr
        assert name in result.stdout


def test_image_register_round_trip(server: FerryServer, tmp_path: Path) -> None:
    """Registered over the API as the admin (a relative path is taken from the CLI's directory);
    a member is refused by policy."""
    (tmp_path / "vmlinuz").write_bytes(b"\0" * 512)
    (tmp_path / "initrd.img").write_bytes(b"\0" * 512)
    args = ["image", "register", "cli-img", "--kernel", "vmlinuz", "--initrd", str(tmp_path / "initrd.img")]
    done = subprocess.run(
        [sys.executable, "-m", "ferry.cli.main", *args, "--cmdline", "console=ttyS0"],
        env=server.cli_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    images = {i["name"]: i for i in ok_json(cli(server, "image", "list", "-f", "json"))}
    assert done.stdout.strip() == f"registered image cli-img ({images['cli-img']['id']})"
    api = server.api("ferry-admin")
    assert api.ok(api.compute("GET", f"/images/{images['cli-img']['id']}"))["image"]["name"] == "cli-img"

    kernel = str(tmp_path / "vmlinuz")
    refused = failed(cli(server, "image", "register", "cli-img-2", "--kernel", kernel, cloud="ferry-demo"))
    assert "image:register" in refused and "(HTTP 403)" in refused
    missing = failed(cli(server, "image", "register", "cli-img-3", "--kernel", str(tmp_path / "nope")))
    assert "does not exist" in missing and "(HTTP 400)" in missing


def test_init_registers_the_test_guest(tmp_path: Path) -> None:
    """`ferry init --guest-dir` (before any server runs) writes the test guest into the database,
    from a guest dir given relative to the current directory."""
    from sqlalchemy import create_engine, select

    from ferry.db.models import Image

    guest = tmp_path / "guest"
    guest.mkdir()
    for name in ("vmlinuz", "initrd.img"):
        (guest / name).write_bytes(b"\0" * 512)
    for _ in range(2):  # run again on the same database: still one image
        subprocess.run(
            [sys.executable, "-m", "ferry.cli.main", "init", "--data-dir", "data", "--guest-dir", "guest"],
            cwd=tmp_path,
            check=True,
            capture_output=True,
            timeout=120,
        )
    engine = create_engine(f"sqlite:///{tmp_path / 'data' / 'ferry.db'}")
    with engine.connect() as c:
        rows = c.execute(
            select(Image.name, Image.kernel, Image.initrd, Image.cmdline).where(Image.kernel.is_not(None))
        ).all()
        parts = set(c.execute(select(Image.name, Image.declared_format).where(Image.kernel.is_(None))).all())
    engine.dispose()
    assert len(rows) == 1
    # Its kernel and initrd are Glance images of their own (aki, ari), which it names.
    assert parts == {("ferry-test-guest-kernel", "aki"), ("ferry-test-guest-ramdisk", "ari")}
    name, kernel, initrd, cmdline = rows[0]
    assert (name, kernel, initrd) == ("ferry-test-guest", str(guest / "vmlinuz"), str(guest / "initrd.img"))
    assert cmdline.startswith("console=ttyS0 ") and "ferry.rate=200" in cmdline


# -- in-process, against a stub Client ---------------------------------------------------------
SID = "6a0b5c1e-0000-4000-8000-000000000001"


class StubClient:
    """Answers compute calls from a script (an exception is raised), recording each call."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[str, str, Any, dict[str, Any]]] = []

    def compute(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        self.calls.append((method, path, body, params))
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer


def test_console_prints_the_log_through_os_get_console_output(capsys: pytest.CaptureFixture[str]) -> None:
    stub = StubClient({"output": "line 1\nline 2\n"})
    servers.print_console(cast(Any, stub), SID, 2)
    assert stub.calls == [("POST", f"/servers/{SID}/action", {"os-getConsoleOutput": {"length": 2}}, {})]
    assert capsys.readouterr().out == "line 1\nline 2\n"


def test_console_follow_reads_on_from_each_offset_until_the_server_is_gone(
    capsys: pytest.CaptureFixture[str],
) -> None:
    stub = StubClient(
        {"output": "boot\n", "offset": 5},
        {"output": "", "offset": 5},  # idle: the only time it sleeps
        {"output": "[red]x[/red]\n", "offset": 18},
        {"output": "y", "offset": 19},
        CliError("Server could not be found. (HTTP 404)", 404),
    )
    slept: list[float] = []
    servers.follow_console(cast(Any, stub), SID, sleep=slept.append)
    assert [(c[0], c[1], c[3]) for c in stub.calls] == [
        ("GET", f"/servers/{SID}/ferry-console", {"offset": o}) for o in (0, 5, 5, 18, 19)
    ]
    assert slept == [servers.CONSOLE_IDLE_S]
    out = capsys.readouterr()
    assert out.out == "boot\n[red]x[/red]\ny"  # printed as the guest wrote it, never as markup
    assert SID in out.err and "gone" in out.err


def test_console_follow_passes_other_errors_on() -> None:
    stub = StubClient({"output": "a", "offset": 1}, CliError("Cannot reach Ferry: refused"))
    with pytest.raises(CliError, match="Cannot reach"):
        servers.follow_console(cast(Any, stub), SID, sleep=lambda _: None)


@pytest.mark.parametrize(
    ("args", "expect_calls"),
    [
        ([], [("POST", f"/servers/{SID}/action", {"os-getConsoleOutput": {"length": None}}, {})]),
        (["--lines", "7"], [("POST", f"/servers/{SID}/action", {"os-getConsoleOutput": {"length": 7}}, {})]),
        (["--follow"], [("GET", f"/servers/{SID}/ferry-console", None, {"offset": 0})]),
    ],
)
def test_console_command(monkeypatch: pytest.MonkeyPatch, args: list[str], expect_calls: list[Any]) -> None:
    """Default: print once; `--follow` follows, and Ctrl-C ends it with exit code 0."""
    answer = KeyboardInterrupt() if "--follow" in args else {"output": "hello\n"}
    stub = StubClient({"server": {"id": SID, "name": "vm"}}, answer)
    monkeypatch.setattr(servers, "Client", lambda: stub)
    result = CliRunner().invoke(cli_main.app, ["server", "console", "vm", *args])
    assert result.exit_code == 0, result.output
    assert stub.calls == [("GET", "/servers/vm", None, {}), *expect_calls]
    assert result.stdout == ("" if "--follow" in args else "hello\n")


def finished_migration(**changes: Any) -> dict[str, Any]:
    def step(step: str, event: str, **detail: Any) -> dict[str, Any]:
        return {"at": "2025-01-01T00:00:01", "step": step, "event": event, "detail": detail}

    m: dict[str, Any] = {
        "status": "success",
        "source_backend": "fast",
        "destination_backend": "bulk",
        "started_at": "2025-01-01T00:00:00",
        "finished_at": "2025-01-01T00:00:02.5",
        "bytes_total": 3 << 20,
        "copy_mode": "background",
        "pivot_ms": 12.34,
        "attached": True,
        "error": None,
        "steps": [
            step("copy", "start"),
            step("copy", migrations.LAYER_COPIED, message="layer 1/2 copied and compared"),
            step("copy", migrations.LAYER_COPIED, message="layer 2/2 copied and compared"),
            step("mirror", migrations.COPY_MODE_SWITCHED, remaining=4096),
            step("pivot", "done", pivot_ms=12.34),
            step("pivot", migrations.SERIAL_CHECKED, serial="vol-serial", file="/b/v"),
            # a message alone never counts: kinds are read, not text
            step("pivot", "note", message="serial checked", serial="not-this-one"),
        ],
    }
    return {**m, **changes}


def summary_rows(capsys: pytest.CaptureFixture[str], m: dict[str, Any]) -> dict[str, str]:
    migrations.summary(m, "table")
    rows = {}
    for line in capsys.readouterr().out.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if len(cells) == 2 and cells[0] not in ("Field", ""):
            rows[cells[0]] = cells[1]
    return rows


def test_migration_summary_reads_typed_step_kinds(capsys: pytest.CaptureFixture[str]) -> None:
    rows = summary_rows(capsys, finished_migration())
    assert rows == {
        "copy mode": "background → write-blocking",
        "error": "",
        "from": "fast",
        "layers copied": "2",
        "mirrored bytes": "3.0 MiB",
        "pivot": "12.3 ms",
        "serial check": "ok (vol-serial)",
        "status": "success",
        "time": "2.50 s",
        "to": "bulk",
    }
    detached = finished_migration(steps=[], pivot_ms=None, attached=False)
    rows = summary_rows(capsys, detached)
    assert (rows["layers copied"], rows["copy mode"], rows["pivot"], rows["serial check"]) == (
        "0",
        "background",
        "(detached: no pivot)",
        "n/a (detached)",
    )
    assert summary_rows(capsys, finished_migration(steps=[]))["serial check"] == "missing"


def test_doctor_repair_reports_what_it_did(server: FerryServer) -> None:
    report = ok_json(cli(server, "doctor", "--repair", "--json", cloud="ferry-admin"))
    assert report["healthy"] and report["repaired"] == [], report
    plain = cli(server, "doctor", "--repair", cloud="ferry-admin")
    assert plain.returncode == 0 and "no drift" in plain.stdout, plain.stderr
