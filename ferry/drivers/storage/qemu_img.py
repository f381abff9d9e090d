"""A small typed async wrapper around the `qemu-img` binary.

Owns: building argv (never a shell), running the process, parsing its JSON and progress output,
and turning failures into `DriverError` carrying qemu-img's stderr. It does not decide where files
live or what a layer is; that is the file driver's job.

Image formats are always passed explicitly (`-f`/`-F`/`-O`): letting qemu-img probe the format of a
guest-writable raw image lets a guest that writes a qcow2 header there make the host open any file
as its backing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ferry.domain.errors import DriverError
from ferry.domain.model import DiskFormat
from ferry.drivers.storage.base import ProgressCallback

_PROGRESS_RE = re.compile(rb"\((\d+(?:\.\d+)?)/100%\)")


class QemuImgFailed(Exception):
    """qemu-img exited with an unexpected status; the root cause inside a `DriverError`."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr.strip()
        super().__init__(f"exit status {returncode}: {self.stderr or '(no message)'}")


@dataclass(frozen=True)
class ImageInfo:
    """The fields of `qemu-img info --output=json` that Ferry uses."""

    filename: str
    format: str
    virtual_size: int
    actual_size: int
    backing_filename: str | None = None
    """The backing name exactly as stored in the header (relative names stay relative)."""
    full_backing_filename: str | None = None
    backing_format: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ImageInfo:
        return cls(
            filename=str(data["filename"]),
            format=str(data["format"]),
            virtual_size=int(data["virtual-size"]),
            actual_size=int(data.get("actual-size", 0)),
            backing_filename=data.get("backing-filename"),
            full_backing_filename=data.get("full-backing-filename"),
            backing_format=data.get("backing-filename-format"),
        )


@dataclass(frozen=True)
class _Result:
    returncode: int
    stdout: bytes
    stderr: str


def _file_arg(path: Path) -> str:
    # Absolute paths only: a relative name containing ':' would be parsed as a protocol
    # ("nbd:...", "json:{...}") and one starting with '-' as an option.
    if not path.is_absolute():
        raise DriverError(f"qemu-img needs an absolute path, got {str(path)!r}")
    return str(path)


def _backing_arg(name: str) -> str:
    # Backing names are stored in headers and resolved later by QEMU: same protocol concern.
    if ":" in name or name.startswith("-"):
        raise DriverError(f"refusing backing file name {name!r}")
    return name


def _options(opts: Mapping[str, str]) -> list[str]:
    if not opts:
        return []
    for key, value in opts.items():
        if "," in key or "," in value or "=" in key:
            raise DriverError(f"invalid qemu-img option {key}={value}")
    return ["-o", ",".join(f"{k}={v}" for k, v in opts.items())]


class QemuImg:
    """Runs one qemu-img binary. Every method raises `DriverError` on failure."""

    def __init__(self, binary: str = "qemu-img") -> None:
        self.binary = binary

    async def info(self, path: Path, fmt: DiskFormat) -> ImageInfo:
        """`qemu-img info -U` of one image (not its backing chain)."""
        out = await self._run_json(["info", "--output=json", "-U", "-f", fmt, _file_arg(path)])
        return ImageInfo.from_json(out)

    async def probe(self, path: Path) -> ImageInfo:
        """`qemu-img info -U` without a format: what qemu-img finds the file to be (never trusted
        to open a guest's disk, only to check that data is what it claims)."""
        out = await self._run_json(["info", "--output=json", "-U", _file_arg(path)])
        return ImageInfo.from_json(out)

    async def info_chain(self, path: Path, fmt: DiskFormat) -> list[ImageInfo]:
        """`qemu-img info -U --backing-chain`: the image and its backing files, top first."""
        argv = ["info", "--output=json", "-U", "--backing-chain", "-f", fmt, _file_arg(path)]
        out = await self._run_json(argv)
        return [ImageInfo.from_json(item) for item in out]

    async def create(
        self,
        path: Path,
        fmt: DiskFormat,
        size: int | None,
        *,
        backing: str | None = None,
        backing_fmt: DiskFormat | None = None,
        options: Mapping[str, str] | None = None,
    ) -> None:
        """Create an image. `size=None` takes the backing file's size."""
        argv = ["create", "-q", "-f", fmt, *_options(options or {})]
        if backing is not None:
            argv += ["-b", _backing_arg(backing), "-F", backing_fmt or DiskFormat.QCOW2]
        argv.append(_file_arg(path))
        if size is not None:
            argv.append(str(size))
        await self._run(argv)

    async def convert(
        self,
        src: Path,
        src_fmt: DiskFormat,
        dst: Path,
        dst_fmt: DiskFormat,
        *,
        backing: str | None = None,
        backing_fmt: DiskFormat | None = None,
        options: Mapping[str, str] | None = None,
        rate_limit: int = 0,
        progress: ProgressCallback | None = None,
        existing_target: bool = False,
    ) -> None:
        """`qemu-img convert -U` of the chain whose top is `src` into `dst`.

        With `backing`, `dst` is created backed by it and only what `src` holds above its own
        backing chain is written. `rate_limit` is in bytes/s (0: unlimited). `existing_target`
        adds `-n` (write into an existing image, which is then not assumed to read as zeros).
        Zero areas are never written out as data (qemu-img's default `-S 4k` sparse detection).
        """
        argv = ["convert", "-U", "-f", src_fmt, "-O", dst_fmt, *_options(options or {})]
        if backing is not None:
            argv += ["-B", _backing_arg(backing), "-F", backing_fmt or DiskFormat.QCOW2]
        if rate_limit > 0:
            argv += ["-r", str(rate_limit)]
        if existing_target:
            argv.append("-n")
        if progress is None:
            await self._run([*argv, _file_arg(src), _file_arg(dst)])
            return
        total = (await self.info(src, src_fmt)).virtual_size
        await self._run(
            [*argv, "-p", _file_arg(src), _file_arg(dst)], on_stdout=progress_parser(progress, total)
        )

    async def rebase(
        self,
        path: Path,
        fmt: DiskFormat,
        backing: str,
        backing_fmt: DiskFormat | None,
        *,
        unsafe: bool = False,
    ) -> None:
        """Point `path` at `backing` ('' for none). Safe mode (default) first copies into `path`
        every cluster where the old and new backing chains differ; `unsafe` only rewrites the header."""
        argv = ["rebase", "-q", "-f", fmt, "-b", _backing_arg(backing)]
        if backing and backing_fmt is not None:
            argv += ["-F", backing_fmt]
        if unsafe:
            argv.append("-u")
        await self._run([*argv, _file_arg(path)])

    async def compare(self, a: Path, a_fmt: DiskFormat, b: Path, b_fmt: DiskFormat) -> bool:
        """True when the guest-visible contents are identical (exit 0), False when they differ (1)."""
        argv = ["compare", "-q", "-U", "-f", a_fmt, "-F", b_fmt, _file_arg(a), _file_arg(b)]
        result = await self._run(argv, ok_codes=(0, 1))
        return result.returncode == 0

    async def check(self, path: Path, fmt: DiskFormat) -> None:
        """`qemu-img check -U`: raises when the image is damaged. Leaked clusters (exit 3) waste
        space but lose no data, so they pass."""
        await self._run(["check", "-q", "-U", "-f", fmt, _file_arg(path)], ok_codes=(0, 3))

    async def resize(self, path: Path, fmt: DiskFormat, size: int) -> None:
        """Grow `path` to `size` bytes (qemu-img refuses to shrink without --shrink; so do we)."""
        await self._run(["resize", "-q", "-f", fmt, _file_arg(path), str(size)])

    async def _run_json(self, args: Sequence[str]) -> Any:
        result = await self._run(args)
        try:
            return json.loads(result.stdout)
        except ValueError as exc:
            raise DriverError(f"qemu-img {args[0]} printed invalid JSON", exc) from exc

    async def _run(
        self,
        args: Sequence[str],
        *,
        ok_codes: tuple[int, ...] = (0,),
        on_stdout: Callable[[bytes], None] | None = None,
    ) -> _Result:
        argv = [self.binary, *args]
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise DriverError(f"cannot run {self.binary}", exc) from exc
        try:
            stdout, stderr = await asyncio.gather(
                _read_all(proc.stdout, on_stdout), _read_all(proc.stderr, None)
            )
            returncode = await proc.wait()
        finally:
            # Cancelled (migration cancel, shutdown): do not leave a copy running behind our back.
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await asyncio.shield(proc.wait())
        err = stderr.decode(errors="replace")
        if returncode not in ok_codes:
            raise DriverError(f"{shlex.join(argv)} failed", QemuImgFailed(argv, returncode, err))
        return _Result(returncode, stdout, err)


async def _read_all(stream: asyncio.StreamReader | None, on_chunk: Callable[[bytes], None] | None) -> bytes:
    if stream is None:
        return b""
    chunks: list[bytes] = []
    while chunk := await stream.read(65536):
        chunks.append(chunk)
        if on_chunk is not None:
            on_chunk(chunk)
    return b"".join(chunks)


def progress_parser(progress: ProgressCallback, total: int) -> Callable[[bytes], None]:
    """Turn `-p` output ("    (12.34/100%)\\r", unbuffered) into (bytes_done, total) calls."""
    pending = b""
    last = -1

    def feed(chunk: bytes) -> None:
        nonlocal pending, last
        pending += chunk
        # Keep only the unfinished tail so a line split across reads is still parsed once.
        cut = max(pending.rfind(b"\r"), pending.rfind(b"\n")) + 1
        complete, pending = pending[:cut], pending[cut:]
        for match in _PROGRESS_RE.finditer(complete):
            done = min(total, round(float(match.group(1)) * total / 100))
            if done != last:
                last = done
                progress(done, total)

    return feed
