"""Property-based fuzzing of every operation of a real `ferry serve` (fake hypervisor) from its own
OpenAPI document, with schemathesis: schema-conforming and schema-violating requests, as an admin
and as a member, ids sometimes of real resources (else nearly every case stops at a 404).

Asserted: no answer is a 5xx, every answer's status is one the operation declares, and the server
logged no traceback. Seeded (`derandomize`), so a failure replays; bounded (`POSITIVE`, `NEGATIVE`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from testkit.server import Api, FerryServer
from tests.conftest import make_server

pytestmark = [pytest.mark.fuzz, pytest.mark.db, pytest.mark.timeout(900)]

POSITIVE, NEGATIVE = 50, 40
"""Examples per operation and mode (at most: an operation with few parameters has fewer distinct
cases): with the ~250 operations, about 9,000 requests in all. `make test` runs this once, on
PostgreSQL (the stricter database: a NUL in a string, a 64-bit overflow)."""
MINIMUM_REQUESTS = 5000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FerryServer]:
    """A server on the fake hypervisor, so that servers can be created, stopped and attached to."""
    tmp = tmp_path_factory.mktemp("ferry-fuzz")
    srv = make_server(tmp)
    cfg = srv.config_path
    cfg.write_text(cfg.read_text().replace('driver = "qemu"', 'driver = "fake"'))
    srv.start()
    yield srv
    srv.shutdown()


@dataclass
class World:
    """Real resources whose ids the fuzzer sometimes uses, and the callers."""

    callers: dict[str, Api]
    ids: dict[str, str] = field(default_factory=dict)


@pytest.fixture(scope="module")
def world(server: FerryServer, tmp_path_factory: pytest.TempPathFactory) -> World:
    admin, demo = server.api("ferry-admin"), server.api("ferry-demo")
    boot = tmp_path_factory.mktemp("boot")
    for name in ("vmlinuz", "initrd.img"):
        (boot / name).write_bytes(b"\0" * 512)
    image = {"name": "fuzz", "kernel": str(boot / "vmlinuz"), "initrd": str(boot / "initrd.img")}
    image_id = admin.ok(admin.compute("POST", "/ferry-images", json={"image": image}), 201)["image"]["id"]
    vol = demo.ok(demo.volume("POST", "/volumes", json={"volume": {"size": 1, "metadata": {"a": "b"}}}), 202)
    vid = vol["volume"]["id"]
    snap = demo.ok(demo.volume("POST", "/snapshots", json={"snapshot": {"volume_id": vid}}), 202)
    vtype = admin.ok(admin.volume("POST", "/types", json={"volume_type": {"name": "fuzz"}}))
    body = {"server": {"name": "fuzz", "imageRef": image_id, "flavorRef": "1"}}
    srv = demo.ok(demo.compute("POST", "/servers", json=body), 202)["server"]
    return World(
        callers={"admin": admin, "member": demo},
        ids={
            "volume_id": vid,
            "snapshot_id": snap["snapshot"]["id"],
            "type_id": vtype["volume_type"]["id"],
            "server_id": srv["id"],
            "image_id": image_id,
            "flavor_id": "1",
            "key": "volume_backend_name",
        },
    )


@dataclass
class Tally:
    requests: int = 0
    by_status: dict[int, int] = field(default_factory=dict)
    by_operation: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


def fuzz_operation(
    operation: Any, mode: GenerationMode, examples: int, world: World, declared: set[str], tally: Tally
) -> None:
    session = requests.Session()

    @settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure is reported as found
        suppress_health_check=list(HealthCheck),
    )
    @given(
        case=operation.as_strategy(generation_mode=mode),
        caller=st.sampled_from(sorted(world.callers)),
        real=st.booleans(),
    )
    def run(case: Any, caller: str, real: bool) -> None:
        api = world.callers[caller]
        params = case.path_parameters or {}
        if "project_id" in params:
            params["project_id"] = api.project_id
        if real:
            for name in params:
                params[name] = world.ids.get(name, params[name])
        resp = case.call(base_url=api.base, session=session, headers={"X-Auth-Token": api.token}, timeout=60)
        tally.requests += 1
        tally.by_operation[operation.label] = tally.by_operation.get(operation.label, 0) + 1
        tally.by_status[resp.status_code] = tally.by_status.get(resp.status_code, 0) + 1
        what = f"{caller} {case.method} {case.formatted_path} {case.query} {str(case.body)[:300]}"
        if resp.status_code >= 500 or str(resp.status_code) not in declared:
            tally.failures.append(f"{resp.status_code} {what}: {resp.text[:300]}")

    with contextlib.suppress(Unsatisfiable):  # nothing to negate in this operation's parameters
        run()


def operations(spec: dict[str, Any]) -> list[tuple[str, str]]:
    """(method, path) of every operation, deletions last: they would remove the real resources."""
    ops = [(m.upper(), p) for p, by_method in spec["paths"].items() for m in by_method]
    return sorted(ops, key=lambda op: (op[0] == "DELETE", op[1], op[0]))


@pytest.mark.usefixtures("no_server_errors")
def test_no_generated_request_breaks_the_server(server: FerryServer, world: World) -> None:
    spec = httpx.get(f"{server.base}/openapi.json").json()
    schema = schemathesis.openapi.from_dict(spec)
    tally = Tally()
    for method, path in operations(spec):
        operation = schema[path][method]
        declared = set(spec["paths"][path][method.lower()]["responses"])
        for mode, examples in ((GenerationMode.POSITIVE, POSITIVE), (GenerationMode.NEGATIVE, NEGATIVE)):
            fuzz_operation(operation, mode, examples, world, declared, tally)
    summary = f"{tally.requests} requests, by status {sorted(tally.by_status.items())}"
    assert not tally.failures, summary + "\n" + "\n".join(tally.failures[:30])
    assert tally.requests >= MINIMUM_REQUESTS, summary
    assert server.api("ferry-demo").volume("GET", "/volumes").status_code == 200  # still serving
    # shown with -s: what the run covered
    print(summary, sorted(tally.by_operation.items(), key=lambda kv: kv[1]))
