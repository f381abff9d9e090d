"""Login hardening in the identity service, on a real SQLite database and real argon2: one verify
whatever the user, off the event loop on niced workers, throttled per user and per address
(clock injected: no test sleeps), bounded, rehashed when the parameters change; `[identity]`."""

from __future__ import annotations

import asyncio
import os
import statistics
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from ferry import config as cfgmod
from ferry.config import IdentityConfig
from ferry.db.engine import make_engine, session_factory
from ferry.db.models import User
from ferry.domain.errors import BadRequest, TooManyRequests, Unauthorized
from ferry.services import bootstrap
from ferry.services.identity import IdentityService, Login, Method, Ref
from ferry.services.passwords import Passwords

LIGHT = replace(cfgmod.password_hashing("light"), refusal_delay_s=0.0)
PASSWORD = "d"  # the demo user's, from the bootstrap credentials below


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sessionmaker[Session]]:
    data = tmp_path_factory.mktemp("login")
    cfg = replace(cfgmod.default_config(data), identity=LIGHT)
    bootstrap.setup_database(cfg, bootstrap.Credentials("a", "s", PASSWORD))
    engine = make_engine(cfg.database_url)
    factory = session_factory(engine)
    with factory.begin() as s:
        ident = IdentityService(factory, 3600, LIGHT)
        ident.ensure_user(s, "retired", "r", ident.ensure_project(s, "demo"), "member")
        s.execute(update(User).where(User.name == "retired").values(enabled=False))
    yield factory
    engine.dispose()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingHasher(PasswordHasher):
    """A real hasher that counts its verifies and notes the worker's nice value."""

    def __init__(self, params: IdentityConfig, gate: threading.Event | None = None) -> None:
        super().__init__(params.argon2_time_cost, params.argon2_memory_cost, params.argon2_parallelism)
        self.verifies = 0
        self.nice: list[int] = []
        self.gate = gate
        self.entered = threading.Event()

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        self.verifies += 1
        self.nice.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(10)
        return super().verify(hash, password)


def service(
    db: sessionmaker[Session],
    params: IdentityConfig = LIGHT,
    gate: threading.Event | None = None,
    clock: Clock | None = None,
) -> tuple[IdentityService, CountingHasher]:
    ident = IdentityService(db, 3600, params, clock=clock or Clock())
    hasher = CountingHasher(params, gate)
    ident.passwords = Passwords(params, hasher)
    return ident, hasher


def login(user: str = "demo", password: str = PASSWORD, address: str = "10.0.0.1") -> Login:
    return Login(Method.PASSWORD, address, user=Ref(user, False), secret=password, scope=Ref("demo", False))


def attempt(ident: IdentityService, what: Login) -> type[Exception] | None:
    try:
        asyncio.run(ident.authenticate(what))
    except (Unauthorized, TooManyRequests) as e:
        return type(e)
    return None


@pytest.mark.parametrize(
    ("case", "what", "outcome"),
    [
        ("right password", login(), None),
        ("wrong password", login(password="nope"), Unauthorized),
        ("unknown user", login(user="nobody"), Unauthorized),
        ("disabled user, right password", login(user="retired", password="r"), Unauthorized),
    ],
)
def test_every_login_runs_exactly_one_verify(
    db: sessionmaker[Session], case: str, what: Login, outcome: type[Exception] | None
) -> None:
    ident, hasher = service(db)
    assert attempt(ident, what) is outcome, case
    assert hasher.verifies == 1, case


def test_unknown_user_takes_as_long_as_a_wrong_password(db: sessionmaker[Session]) -> None:
    """Loose on purpose (a shared machine): medians of 10 tries within 3x of each other, with
    parameters heavy enough for the hash to dominate (~10 ms)."""
    params = replace(LIGHT, argon2_time_cost=2, argon2_memory_cost=16384)
    ident, _ = service(db, params)
    with db.begin() as s:  # the demo user's hash with these parameters
        ident.ensure_user(s, "timed", "t", ident.ensure_project(s, "demo"), "member")

    def median_s(user: str) -> float:
        times = []
        for i in range(10):
            t0 = time.perf_counter()
            assert attempt(ident, login(user=user, password="wrong", address=f"a{i}")) is Unauthorized
            times.append(time.perf_counter() - t0)
            ident.throttle.succeeded(user)
        return statistics.median(times)

    known, unknown = median_s("timed"), median_s("no-such-user")
    assert 1 / 3 < unknown / known < 3, (known, unknown)


def test_hashing_runs_off_the_event_loop_on_niced_workers(db: sessionmaker[Session]) -> None:
    gate = threading.Event()
    ident, hasher = service(db, gate=gate)

    async def scenario() -> int:
        task = asyncio.create_task(ident.authenticate(login()))
        while not hasher.entered.is_set():
            await asyncio.sleep(0.001)
        ticks = 0
        for _ in range(20):  # the loop keeps turning while the verify is held in its worker
            await asyncio.sleep(0)
            ticks += 1
        gate.set()
        await task
        return ticks

    assert asyncio.run(scenario()) == 20
    main_nice = os.getpriority(os.PRIO_PROCESS, 0)
    assert hasher.nice == [min(19, main_nice + LIGHT.hash_nice)]


def test_pending_hashes_are_bounded(db: sessionmaker[Session]) -> None:
    gate = threading.Event()
    ident, hasher = service(db, replace(LIGHT, max_pending_hashes=1), gate=gate)

    async def scenario() -> BaseException | None:
        first = asyncio.create_task(ident.authenticate(login()))
        while not hasher.entered.is_set():
            await asyncio.sleep(0.001)
        second = await asyncio.gather(ident.authenticate(login(address="b")), return_exceptions=True)
        gate.set()
        await first
        return second[0] if isinstance(second[0], BaseException) else None

    refused = asyncio.run(scenario())
    assert isinstance(refused, TooManyRequests) and refused.retry_after_s == 1
    assert hasher.verifies == 1  # the refused one never reached a worker


def test_failures_per_user_are_refused_unheard_until_the_window_ends(db: sessionmaker[Session]) -> None:
    clock = Clock()
    ident, hasher = service(db, replace(LIGHT, refusal_delay_s=0.05), clock=clock)
    for i in range(5):
        assert attempt(ident, login(password="nope", address=f"10.0.1.{i}")) is Unauthorized
    clock.now += 10
    t0 = time.monotonic()
    with pytest.raises(TooManyRequests) as refused:
        asyncio.run(ident.authenticate(login(address="10.9.9.9")))  # even the right password
    assert time.monotonic() - t0 >= 0.05  # answered after the refusal delay
    assert refused.value.retry_after_s == 50
    assert refused.value.code == 429 and refused.value.kind == "overLimit"
    assert hasher.verifies == 5  # refused unheard
    clock.now += 50
    assert attempt(ident, login()) is None


def test_a_successful_login_resets_the_users_count(db: sessionmaker[Session]) -> None:
    ident, _ = service(db)
    for _ in range(4):
        assert attempt(ident, login(password="nope", address="x")) is Unauthorized
    assert attempt(ident, login(address="y")) is None
    for _ in range(4):
        assert attempt(ident, login(password="nope", address="z")) is Unauthorized
    assert attempt(ident, login(address="w")) is None


def test_failures_per_address_count_across_user_names(db: sessionmaker[Session]) -> None:
    ident, hasher = service(db)
    for i in range(20):  # rotating names, unknown ones too: the user counts never fill
        guess = login(user=f"guess-{i % 7}", password="nope", address="6.6.6.6")
        assert attempt(ident, guess) is Unauthorized
    assert attempt(ident, login(address="6.6.6.6")) is TooManyRequests
    assert hasher.verifies == 20
    assert attempt(ident, login(address="7.7.7.7")) is None


def test_a_hash_with_other_parameters_verifies_and_is_rehashed(db: sessionmaker[Session]) -> None:
    old = replace(LIGHT, argon2_time_cost=2, argon2_memory_cost=2048)
    ident_old, _ = service(db, old)
    with db.begin() as s:
        ident_old.ensure_user(s, "legacy", "l", ident_old.ensure_project(s, "demo"), "member")

    def stored() -> str:
        with db() as s:
            return str(s.scalar(select(User.password_hash).where(User.name == "legacy")))

    before = stored()
    assert "m=2048,t=2" in before
    ident, _ = service(db)
    assert attempt(ident, login(user="legacy", password="l")) is None
    after = stored()
    assert after != before and "m=1024,t=1,p=1" in after
    assert attempt(ident, login(user="legacy", password="l")) is None
    assert stored() == after  # nothing more to do


def test_dummy_hash_has_the_configured_parameters() -> None:
    p = Passwords(cfgmod.password_hashing("strong"))
    assert p._dummy.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert not p.needs_rehash(p._dummy)
    assert p.needs_rehash("not a hash")


# -- [identity] --------------------------------------------------------------------------------
def test_identity_config_defaults_are_argon2_cffis() -> None:
    strong = cfgmod.from_dict({}).identity
    h = PasswordHasher()
    assert (strong.argon2_time_cost, strong.argon2_memory_cost, strong.argon2_parallelism) == (
        h.time_cost,
        h.memory_cost,
        h.parallelism,
    )
    assert (strong.user_failures, strong.address_failures, strong.failure_window_s) == (5, 20, 60.0)


def test_identity_config_profile_overrides_and_round_trip(tmp_path: Path) -> None:
    section = {"password_hashing": "light", "argon2_time_cost": 2, "user_failures": 3}
    raw: dict[str, Any] = {"identity": section}
    cfg = cfgmod.from_dict(raw)
    assert (cfg.identity.argon2_time_cost, cfg.identity.argon2_memory_cost) == (2, 1024)
    assert cfg.identity.user_failures == 3
    path = tmp_path / "ferry.toml"
    path.write_text(cfgmod.dump(cfg))
    assert cfgmod.load(path).identity == cfg.identity


@pytest.mark.parametrize(
    "section",
    [
        {"password_hashing": "weak"},
        {"argon2_time_cost": 0},
        {"argon2_parallelism": 4, "argon2_memory_cost": 16},
        {"failure_window_s": 0},
        {"no_such_key": 1},
        {"user_failures": "five"},
    ],
)
def test_identity_config_refuses_nonsense(section: dict[str, Any]) -> None:
    with pytest.raises(BadRequest):
        cfgmod.from_dict({"identity": section})
