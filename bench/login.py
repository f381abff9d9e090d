"""Figure 8: ordinary requests while four clients hammer wrong passwords.

A `ferry serve` with the production password hashing (argon2id, argon2-cffi's defaults: 64 MiB,
t=3, p=4) and ten volumes. A probe client sends `GET volumes/detail` as the admin, one request at a
time over one keep-alive connection, `login_probes` times; its latencies are the figure.

- Baseline: the probe alone (idle).
- Loaded: the same probe while four hammering clients, each in its own process with its own
  connection, send wrong-password logins back to back, rotating user names: the three real ones
  and a fresh unknown name on most attempts, so that no per-user limit makes the attack cheap.
  They start before the probe and stop when it is done (or after `login_hammer_max` attempts or
  `LOAD_TIMEOUT_S` each). Loopback only.

Two cases, each on a server just (re)started, idle then loaded:
- 8a: the default throttle: one address, so after 20 failures every attempt is a cheap 429.
- 8b: the per-address limit lifted (`address_failures` = 10^9), as from an attacker with many
  addresses: every attempt with an unknown name costs a full argon2 verify, all the time. This is
  the case that shows whether hashing stays off the event loop.

The hammering processes run at nice 10: on a real deployment their CPU is the attacker's, not the
server's; here they share the machine's cores with it.

Target: the probe's p99 while hammered ≤ 2x its idle p99 (issue #10).
"""

from __future__ import annotations

import gc
import itertools
import multiprocessing as mp
import os
import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.core import Row, Settings, fmt_ms, fmt_ratio, log, percentile
from testkit import scenario
from testkit.server import Api, FerryServer

TARGET = 2.0
HAMMERS = 4
LOAD_TIMEOUT_S = 120.0
WARMUP = 50
HAMMER_NICE = 10
KNOWN = ("admin", "demo", "ferry-service")


def _login_body(user: str, password: str) -> dict[str, Any]:
    return {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {"user": {"name": user, "domain": {"name": "Default"}, "password": password}},
            },
            "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}},
        }
    }


def _names(client: int) -> Any:
    """A real name every fourth attempt, else a name never tried before."""
    for i in itertools.count():
        yield KNOWN[(i // 4) % len(KNOWN)] if i % 4 == 0 else f"guess-{client}-{i}"


@dataclass
class Signals:
    """Between the benchmark and its hammering processes (multiprocessing events and a queue)."""

    started: list[Any]
    """One per client: set at its first answer."""
    refused: Any
    """Set at the first 429 any client gets."""
    stop: Any
    out: Any
    """Each client's report."""


def hammer(base: str, client: int, max_attempts: int, sig: Signals) -> None:
    """One hammering client (a process of its own): wrong passwords until told to stop."""
    os.nice(HAMMER_NICE)
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    deadline = time.monotonic() + LOAD_TIMEOUT_S
    with httpx.Client(timeout=60) as http:
        for name in itertools.islice(_names(client), max_attempts):
            if sig.stop.is_set() or time.monotonic() > deadline:
                break
            t0 = time.perf_counter()
            resp = http.post(f"{base}/identity/v3/auth/tokens", json=_login_body(name, "wrong-password"))
            latencies.append((time.perf_counter() - t0) * 1000)
            statuses[resp.status_code] += 1
            sig.started[client].set()
            if resp.status_code == 429:
                sig.refused.set()
    sig.out.put({"client": client, "statuses": dict(statuses), "latencies_ms": latencies})


def probe(api: Api, n: int) -> list[float]:
    for _ in range(WARMUP):
        api.ok(api.volume("GET", "/volumes/detail"))
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        api.ok(api.volume("GET", "/volumes/detail"))
        samples.append((time.perf_counter() - t0) * 1000)
    return samples


def loaded(srv: FerryServer, api: Api, s: Settings, throttled: bool) -> tuple[list[float], list[Any], float]:
    """The probe while the hammers run, once they are in their steady state (every client
    answered; with `throttled`, the address refused); their reports and the probe's duration."""
    ctx = mp.get_context("fork")
    sig = Signals([ctx.Event() for _ in range(HAMMERS)], ctx.Event(), ctx.Event(), ctx.Queue())
    procs = [ctx.Process(target=hammer, args=(srv.base, i, s.login_hammer_max, sig)) for i in range(HAMMERS)]
    for p in procs:
        p.start()
    try:
        for e in [*sig.started, *([sig.refused] if throttled else [])]:
            if not e.wait(LOAD_TIMEOUT_S):
                raise RuntimeError("the hammering clients did not reach their steady state")
        t0 = time.monotonic()
        samples = probe(api, s.login_probes)
        probe_s = time.monotonic() - t0
    finally:
        sig.stop.set()
    reports = [sig.out.get(timeout=LOAD_TIMEOUT_S) for _ in procs]
    for p in procs:
        p.join(30)
    return samples, reports, probe_s


def run_case(srv: FerryServer, s: Settings, throttled: bool) -> dict[str, Any]:
    """Idle, hammered, idle again: the baseline is both idle phases (drift in the machine's load
    during the case then weighs on both sides)."""
    srv.start()
    try:
        api = srv.api("ferry-admin")
        idle = probe(api, s.login_probes // 2)
        hammered, reports, probe_s = loaded(srv, api, s, throttled)
        idle += probe(api, s.login_probes - s.login_probes // 2)
        problems = srv.log_problems()
    finally:
        srv.stop()
    if problems:
        raise RuntimeError(f"the server logged errors: {problems[:3]}")
    return {"idle_ms": idle, "loaded_ms": hammered, "hammers": reports, "probe_s": probe_s}


def set_identity(srv: FerryServer, **values: object) -> None:
    """Change `[identity]` settings in the server's ferry.toml (it reads them when it starts)."""
    cfg = srv.config_path.read_text()
    for key, value in values.items():
        cfg, n = re.subn(rf"^{key} = .*$", f"{key} = {value}", cfg, flags=re.M)
        if n != 1:
            raise RuntimeError(f"no {key} line in ferry.toml")
    srv.config_path.write_text(cfg)


def run_login(root: Path, s: Settings) -> list[Row]:
    srv = FerryServer(root, password_hashing="strong")
    srv.start()
    try:
        api = srv.api("ferry-admin")
        for i in range(10):
            scenario.create_volume(api, 1, f"bench-l{i}")
    finally:
        srv.stop()
    gc.collect()
    gc.freeze()  # this process's collector must not land in the samples (see figure 6)
    log("login: default throttle")
    throttled = run_case(srv, s, throttled=True)
    set_identity(srv, address_failures=10**9)
    log("login: per-address limit lifted")
    unthrottled = run_case(srv, s, throttled=True)
    return [
        _row("8a", "one address (throttled)", throttled),
        _row("8b", "many addresses (per-address limit lifted)", unthrottled),
    ]


def _hammer_summary(reports: list[dict[str, Any]], probe_s: float) -> dict[str, Any]:
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    for r in reports:
        statuses.update({int(k): v for k, v in r["statuses"].items()})
        latencies += r["latencies_ms"]
    return {
        "statuses": dict(statuses),
        "attempts": sum(statuses.values()),
        "login_p50_ms": round(percentile(latencies, 50), 1) if latencies else None,
        "probe_s": round(probe_s, 2),
    }


def _row(key: str, case: str, m: dict[str, Any]) -> Row:
    idle, hit = m["idle_ms"], m["loaded_ms"]
    ratio = percentile(hit, 99) / percentile(idle, 99)
    summary = _hammer_summary(m["hammers"], m["probe_s"])
    codes = ", ".join(f"{n}x {c}" for c, n in sorted(summary["statuses"].items()))
    data = {"idle_ms": [round(x, 2) for x in idle], "loaded_ms": [round(x, 2) for x in hit], **summary}
    return Row(
        key,
        f"Login hammering, {HAMMERS} clients, {case}: GET volumes/detail",
        _cell(hit),
        f"idle: {_cell(idle)}",
        f"{fmt_ratio(ratio)} (p99)",
        f"p99 ≤ {TARGET:.2f}x idle",
        ratio <= TARGET,
        data,
        note=f"hammers: {codes}",
    )


def _cell(samples: list[float]) -> str:
    return f"p50 {fmt_ms(percentile(samples, 50))}, p99 {fmt_ms(percentile(samples, 99))}"
