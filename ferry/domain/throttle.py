"""Failed-login throttling: how many wrong passwords a user name, and a client address, may send
in a window before logins are refused without looking at the password.

Pure bookkeeping in memory (one process): fixed windows per key, O(1) per event, at most
`max_keys` keys per counter (the least recently failed are forgotten first, and so are windows
that have ended). No clock of its own: every call takes `now` (seconds, monotonic) from the caller.
It must not do I/O, hash passwords or know about HTTP.

A fixed window lets a key through at most `limit` failures per window (up to twice that across a
window boundary); a success resets the user's count but never the address's, so a valid account
cannot launder an address that guesses at others.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass


@dataclass
class _Window:
    start: float
    failures: int


class FailureCounter:
    """Failures per key within a fixed window that starts at the key's first failure."""

    def __init__(self, limit: int, window_s: float, max_keys: int) -> None:
        if limit < 1 or window_s <= 0 or max_keys < 1:
            raise ValueError("limit and max_keys must be at least 1 and window_s positive")
        self.limit = limit
        self.window_s = window_s
        self.max_keys = max_keys
        self._windows: OrderedDict[str, _Window] = OrderedDict()

    def __len__(self) -> int:
        return len(self._windows)

    def retry_after(self, key: str, now: float) -> float | None:
        """Seconds until `key` may try again, or None if it may now."""
        w = self._windows.get(key)
        if w is None or w.failures < self.limit:
            return None
        left = w.start + self.window_s - now
        return left if left > 0 else None

    def fail(self, key: str, now: float) -> None:
        w = self._windows.get(key)
        if w is None or now - w.start >= self.window_s:
            self._windows[key] = _Window(now, 1)
        else:
            w.failures += 1
        self._windows.move_to_end(key)
        self._forget(now)

    def reset(self, key: str) -> None:
        self._windows.pop(key, None)

    def _forget(self, now: float) -> None:
        """Drop the least recently failed keys: over the cap, or once their window has ended.
        Each key is dropped at most once per insertion, so this is O(1) amortised."""
        while len(self._windows) > self.max_keys:
            self._windows.popitem(last=False)
        while self._windows:
            oldest = next(iter(self._windows.values()))
            if now - oldest.start < self.window_s:
                break
            self._windows.popitem(last=False)


@dataclass(frozen=True)
class ThrottleLimits:
    user_failures: int = 5
    address_failures: int = 20
    window_s: float = 60.0
    max_keys: int = 10_000


class LoginThrottle:
    """Wrong-password counts per user name and per client address."""

    def __init__(self, limits: ThrottleLimits) -> None:
        self.users = FailureCounter(limits.user_failures, limits.window_s, limits.max_keys)
        self.addresses = FailureCounter(limits.address_failures, limits.window_s, limits.max_keys)

    def refusal(self, user_name: str, address: str, now: float) -> int | None:
        """Whole seconds to wait (at least 1) if this login must be refused unheard, else None."""
        waits = [
            w
            for w in (self.users.retry_after(user_name, now), self.addresses.retry_after(address, now))
            if w is not None
        ]
        return max(1, math.ceil(max(waits))) if waits else None

    def failed(self, user_name: str, address: str, now: float) -> None:
        self.users.fail(user_name, now)
        self.addresses.fail(address, now)

    def succeeded(self, user_name: str) -> None:
        self.users.reset(user_name)
