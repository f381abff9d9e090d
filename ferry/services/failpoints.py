"""Failpoints: named points where a test can make the control plane die or fail.

Armed only through `FERRY_FAILPOINTS` (e.g. `mirror.after:crash,copy-layers.before:error`),
read once at import. `crash` exits at once like SIGKILL (no cleanup, no flush); `error` raises
a DriverError; `abort` raises `Abort`, which no handler catches, so an in-process test sees the
task die mid-step as a crash would leave it. Unarmed, `hit` is one truth test of an empty dict.
"""

from __future__ import annotations

import logging
import os
import sys

from ferry.domain.errors import DriverError

log = logging.getLogger(__name__)


def _parse(spec: str) -> dict[str, str]:
    armed: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in spec.split(","))):
        name, _, action = item.partition(":")
        armed[name] = action or "crash"
    return armed


ARMED = _parse(os.environ.get("FERRY_FAILPOINTS", ""))


class Abort(BaseException):
    """Raised by an `abort` failpoint: unwinds like a crash, past every `except Exception`."""


def hit(name: str) -> None:
    action = ARMED.get(name) if ARMED else None
    if action is None:
        return
    if action == "crash":
        log.critical("failpoint %s: crashing", name)
        sys.stderr.write(f"FAILPOINT {name}: crash\n")
        sys.stderr.flush()
        os._exit(137)
    if action == "abort":
        raise Abort(name)
    raise DriverError(f"failpoint {name} triggered")
