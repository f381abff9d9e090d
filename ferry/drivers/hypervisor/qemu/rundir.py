"""The one home of a QEMU server's run directory layout, `<servers root>/<server id>/`.

Owns: where the QMP socket, pidfile, console log, QEMU's stderr and the small notes about jobs and
unplugs in flight live, reading and writing those notes atomically, and bounded reads of the
console log. Nothing else in Ferry builds these paths: callers ask `RunDir` (or `servers_root`
for the directory under a control plane's state directory).
Does not own the process (process.py) nor what the notes mean (the driver).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ferry.domain.errors import NotFound
from ferry.domain.ids import require_uuid
from ferry.drivers.hypervisor.console import MAX_TAIL, chunk_bounds, last_lines
from ferry.drivers.hypervisor.qmp import Json


def servers_root(state_dir: Path) -> Path:
    """Where a control plane with state directory `state_dir` keeps its servers' run dirs."""
    return Path(state_dir) / "servers"


@dataclass(frozen=True)
class RunDir:
    """Layout of one server's run directory."""

    path: Path

    @classmethod
    def of(cls, root: Path, server_id: str) -> RunDir:
        """The run dir of `server_id` under `root` (the id is validated: it becomes a path)."""
        return cls(Path(root) / require_uuid(server_id, "server id"))

    @property
    def server_id(self) -> str:
        return self.path.name

    @property
    def socket(self) -> Path:
        return self.path / "qmp.sock"

    @property
    def pidfile(self) -> Path:
        return self.path / "qemu.pid"

    @property
    def console(self) -> Path:
        return self.path / "console.log"

    @property
    def log(self) -> Path:
        return self.path / "qemu.log"

    # -- notes ---------------------------------------------------------------------------
    def note(self, kind: str, key: str) -> Path:
        return self.path / f"{kind}-{key}.json"

    def read_note(self, kind: str, key: str) -> Json | None:
        try:
            data = json.loads(self.note(kind, key).read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def write_note(self, kind: str, key: str, data: Json) -> None:
        target = self.note(kind, key)
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, target)

    def drop_note(self, kind: str, key: str) -> None:
        self.note(kind, key).unlink(missing_ok=True)

    def log_tail(self, limit: int = 800) -> str:
        try:
            return self.log.read_text(errors="replace")[-limit:].strip()
        except OSError:
            return ""

    # -- console -------------------------------------------------------------------------
    def console_output(self, length: int | None) -> str:
        """The last `length` lines of the console log (all of its last `MAX_TAIL` bytes if None)."""
        with self._open_console() as f:
            size = f.seek(0, os.SEEK_END)
            start = max(0, size - MAX_TAIL)
            f.seek(start)
            return last_lines(f.read(size - start), length, partial=start > 0)

    def console_read(self, offset: int, limit: int) -> tuple[bytes, int]:
        """Up to `limit` bytes of the console log from byte `offset`, and the offset after them.

        QEMU truncates the log when the server is started again: an offset past the end means
        the log began anew, so the read starts over at 0."""
        limit = chunk_bounds(offset, limit)
        with self._open_console() as f:
            if offset > f.seek(0, os.SEEK_END):
                offset = 0
            f.seek(offset)
            data = f.read(limit)
        return data, offset + len(data)

    def _open_console(self) -> BinaryIO:
        try:
            return self.console.open("rb")
        except FileNotFoundError:
            raise NotFound(f"server {self.server_id} has no console log") from None
