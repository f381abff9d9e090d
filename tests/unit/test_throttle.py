"""The failed-login throttle (`domain/throttle.py`): limits per user name and per address, windows,
reset on success, bounded memory. Pure: the clock is a number passed in."""

from __future__ import annotations

import pytest

from ferry.domain.throttle import FailureCounter, LoginThrottle, ThrottleLimits


def test_counter_refuses_at_the_limit_until_the_window_ends() -> None:
    c = FailureCounter(limit=3, window_s=60, max_keys=10)
    for t in (0.0, 1.0):
        c.fail("u", t)
        assert c.retry_after("u", t) is None
    c.fail("u", 2.0)
    assert c.retry_after("u", 2.0) == pytest.approx(58.0)
    assert c.retry_after("u", 59.5) == pytest.approx(0.5)
    assert c.retry_after("u", 60.0) is None  # the window that started at 0 is over
    c.fail("u", 61.0)  # a new window: one failure
    assert c.retry_after("u", 61.0) is None


def test_counter_keys_are_independent_and_reset_forgets() -> None:
    c = FailureCounter(limit=1, window_s=10, max_keys=10)
    c.fail("a", 0)
    assert c.retry_after("a", 0) is not None
    assert c.retry_after("b", 0) is None
    c.reset("a")
    c.reset("never-seen")
    assert c.retry_after("a", 0) is None


def test_counter_memory_is_bounded_by_max_keys() -> None:
    c = FailureCounter(limit=1, window_s=1000, max_keys=100)
    for i in range(10_000):
        c.fail(f"user-{i}", i * 0.001)
    assert len(c) == 100
    assert c.retry_after("user-9999", 10) is not None  # the newest are kept
    assert c.retry_after("user-0", 10) is None  # the oldest were forgotten


def test_counter_forgets_ended_windows() -> None:
    c = FailureCounter(limit=5, window_s=10, max_keys=100)
    for i in range(50):
        c.fail(f"old-{i}", 0)
    c.fail("new", 11)
    assert len(c) == 1


def test_counter_rejects_nonsense_limits() -> None:
    for args in ((0, 1.0, 1), (1, 0.0, 1), (1, 1.0, 0)):
        with pytest.raises(ValueError):
            FailureCounter(*args)


def test_login_throttle_per_user_then_per_address() -> None:
    t = LoginThrottle(ThrottleLimits(user_failures=2, address_failures=5, window_s=60, max_keys=100))
    t.failed("alice", "10.0.0.1", 0)
    assert t.refusal("alice", "10.0.0.1", 0) is None
    t.failed("alice", "10.0.0.2", 0)  # another address: the user's count still grows
    assert t.refusal("alice", "10.0.0.3", 0.5) == 60  # whole seconds, rounded up
    assert t.refusal("bob", "10.0.0.1", 0.5) is None
    for name in ("x", "y", "z", "w"):  # rotating names from one address
        t.failed(name, "10.0.0.1", 1)
    assert t.refusal("someone-new", "10.0.0.1", 1) == 59
    assert t.refusal("someone-new", "10.0.0.9", 1) is None


def test_login_throttle_success_resets_the_user_not_the_address() -> None:
    t = LoginThrottle(ThrottleLimits(user_failures=2, address_failures=3, window_s=60, max_keys=100))
    t.failed("alice", "a", 0)
    t.succeeded("alice")
    t.failed("alice", "a", 1)
    assert t.refusal("alice", "b", 1) is None  # one failure since the success
    t.failed("alice", "a", 2)
    assert t.refusal("alice", "b", 2) is not None
    assert t.refusal("carol", "a", 2) is not None  # the address's three failures still count


def test_login_throttle_retry_after_is_at_least_one_second() -> None:
    t = LoginThrottle(ThrottleLimits(user_failures=1, address_failures=10, window_s=1, max_keys=10))
    t.failed("u", "a", 0)
    assert t.refusal("u", "a", 0.99) == 1
