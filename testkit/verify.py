"""Host-side verifier of the blocks the test guest writes.

Block layout (4096 bytes, integers little endian; written by guest/workload.c):

    0..7       magic b"FERRYBLK"
    8..27      first 20 bytes of the disk serial, NUL padded
    28..31     reserved, 0
    32..39     u64 block index (offset / 4096 within the span)
    40..47     u64 seq (per disk, from 1; index == seq % nblocks)
    48..4091   payload, see expected_block()
    4092..4095 u32 CRC32 (zlib.crc32) of bytes 0..4091

The guest cycles over the first ``nblocks = min(span, disk size) // 4096`` blocks, writing seq
``s`` at index ``s % nblocks``. A block is either all zeros (never written) or valid.

Completeness (``synced_seq`` given): the guest reported every seq up to ``synced_seq`` as
flushed, so each position ``i`` must hold at least the last such seq that went there:
``s_i = max{s <= synced_seq : s % nblocks == i}`` -- unless ``s_i < first_seq`` (written by
an earlier boot of the guest, which may have lost unflushed writes when it stopped).

CLI: ``python -m testkit.verify IMAGE SERIAL [--synced-seq N] [--first-seq N]
[--span-mb N]``; exits 1 if the image fails.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

BLOCK = 4096
MAGIC = b"FERRYBLK"
SERIAL_LEN = 20
_HEADER = struct.Struct("<8s20s4sQQ")  # magic, serial, reserved, index, seq (48 bytes)
_ZERO = bytes(BLOCK)
_M64 = (1 << 64) - 1


def serial_field(serial: str) -> bytes:
    """Bytes 8..27 of a block: the serial's first 20 bytes, NUL padded."""
    return serial.encode()[:SERIAL_LEN].ljust(SERIAL_LEN, b"\0")


def expected_block(serial: str, index: int, seq: int) -> bytes:
    """The exact block the guest writes for (serial, index, seq).

    Payload: x = seq * 0x9E3779B97F4A7C15 ^ (index + 1) * 0xC2B2AE3D27D4EB4F (mod 2**64,
    x = 1 if 0); each 8-byte word is the next xorshift64 state (x ^= x << 13; x ^= x >> 7;
    x ^= x << 17); the last 4 payload bytes hold the low half of the 506th state.
    """
    x = (seq * 0x9E3779B97F4A7C15 ^ (index + 1) * 0xC2B2AE3D27D4EB4F) & _M64 or 1
    words = []
    for _ in range((BLOCK - 4 - 48 + 7) // 8):
        x ^= (x << 13) & _M64
        x ^= x >> 7
        x ^= (x << 17) & _M64
        words.append(x)
    payload = struct.pack(f"<{len(words)}Q", *words)[: BLOCK - 4 - 48]
    body = _HEADER.pack(MAGIC, serial_field(serial), bytes(4), index, seq) + payload
    return body + struct.pack("<I", zlib.crc32(body))


@dataclass
class VerifyReport:
    path: str
    serial: str
    nblocks: int
    valid: int = 0
    zero: int = 0
    bad: int = 0
    missing: int = 0  # completeness failures (only when synced_seq was given)
    max_seq: int = 0
    synced_seq: int | None = None
    first_seq: int = 1
    failures: list[str] = field(default_factory=list)  # one precise message per failure

    @property
    def ok(self) -> bool:
        return self.bad == 0 and self.missing == 0

    def summary(self) -> str:
        state = "OK" if self.ok else "FAILED"
        return (
            f"{state}: {self.path} serial={self.serial[:SERIAL_LEN]} nblocks={self.nblocks} "
            f"valid={self.valid} zero={self.zero} bad={self.bad} missing={self.missing} "
            f"max_seq={self.max_seq} synced_seq={self.synced_seq} first_seq={self.first_seq}"
        )


def check_block(block: bytes, serial: str, index: int, nblocks: int) -> tuple[int, str | None]:
    """Check one block at position ``index``: (seq, None) if valid, (0, None) if all zeros,
    (-1, reason) if bad."""
    if block == _ZERO:
        return 0, None
    magic, ser, _reserved, idx, seq = _HEADER.unpack_from(block)
    if magic != MAGIC:
        return -1, f"bad magic {magic!r}"
    if ser != serial_field(serial):
        return -1, f"serial {ser.rstrip(bytes(1))!r} != {serial_field(serial).rstrip(bytes(1))!r}"
    if idx != index:
        return -1, f"holds index {idx} (seq {seq})"
    (crc,) = struct.unpack_from("<I", block, BLOCK - 4)
    if crc != zlib.crc32(block[: BLOCK - 4]):
        return -1, f"CRC mismatch (seq {seq})"
    if seq == 0 or seq % nblocks != index:
        return -1, f"seq {seq} does not belong at index {index} (nblocks {nblocks})"
    return seq, None


def verify_bytes(
    data: bytes,
    serial: str,
    synced_seq: int | None = None,
    first_seq: int = 1,
    path: str = "<bytes>",
) -> VerifyReport:
    """Verify a guest-visible span already read into memory (``len(data) // 4096`` blocks)."""
    nblocks = len(data) // BLOCK
    rep = VerifyReport(path, serial, nblocks, synced_seq=synced_seq, first_seq=first_seq)
    for i in range(nblocks):
        seq, reason = check_block(data[i * BLOCK : (i + 1) * BLOCK], serial, i, nblocks)
        if reason is not None:
            rep.bad += 1
            rep.failures.append(f"block {i}: {reason}")
        elif seq == 0:
            rep.zero += 1
        else:
            rep.valid += 1
            rep.max_seq = max(rep.max_seq, seq)
        if synced_seq is not None and nblocks:
            # Last flushed seq that went to position i (may be < 1 or < first_seq: no claim).
            need = synced_seq - (synced_seq - i) % nblocks
            if need >= max(first_seq, 1) and (reason is not None or seq < need):
                rep.missing += 1
                held = "a bad block" if reason else ("zeros" if seq == 0 else f"seq {seq}")
                rep.failures.append(
                    f"block {i}: holds {held}, expected seq >= {need} (synced_seq {synced_seq})"
                )
    return rep


def _virtual_size(path: Path, fmt: str | None) -> int:
    cmd = ["qemu-img", "info", "-U", "--output=json"] + (["-f", fmt] if fmt else []) + [str(path)]
    info = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    return int(info["virtual-size"])


def read_span(path: Path, span_bytes: int, fmt: str | None = None) -> bytes:
    """The first ``span_bytes`` (clamped to the disk size) of the guest-visible view of an image
    or qcow2 chain. ``-U``: works while QEMU holds the image open."""
    length = min(span_bytes, _virtual_size(path, fmt)) // BLOCK * BLOCK
    if length == 0:
        return b""
    with tempfile.TemporaryDirectory(prefix="ferry-verify-") as tmp:
        out = os.path.join(tmp, "span.raw")
        cmd = ["qemu-img", "dd", "-U"] + (["-f", fmt] if fmt else [])
        cmd += ["-O", "raw", f"bs={BLOCK}", f"count={length // BLOCK}", f"if={path}", f"of={out}"]
        subprocess.run(cmd, capture_output=True, text=True, check=True)
        with open(out, "rb") as f:
            return f.read(length)


def verify_image(
    path: Path | str,
    serial: str,
    synced_seq: int | None = None,
    span_mb: int = 64,
    first_seq: int = 1,
    fmt: str | None = None,
) -> VerifyReport:
    """Verify the first ``span_mb`` MiB of an image (raw, qcow2, qcow2 chain).

    ``serial`` is the serial given to QEMU (compared on its first 20 bytes). With
    ``synced_seq`` (the guest's last reported synced_seq) also check that every flushed write
    is there; ``first_seq`` is the guest's reported first_seq (writes from before the current
    guest boot are not required). ``span_mb`` must match the guest's ferry.span_mb.
    """
    data = read_span(Path(path), span_mb << 20, fmt)
    return verify_bytes(data, serial, synced_seq, first_seq, str(path))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m testkit.verify", description="Verify a Ferry test guest disk image."
    )
    p.add_argument("image")
    p.add_argument("serial", help="the disk serial given to QEMU (first 20 bytes are compared)")
    p.add_argument("--synced-seq", type=int, default=None)
    p.add_argument("--first-seq", type=int, default=1)
    p.add_argument("--span-mb", type=int, default=64)
    p.add_argument("-f", "--format", default=None, help="image format (default: probe)")
    p.add_argument("--max-failures", type=int, default=50, help="failures to print")
    args = p.parse_args(argv)
    rep = verify_image(args.image, args.serial, args.synced_seq, args.span_mb, args.first_seq, args.format)
    for line in rep.failures[: args.max_failures]:
        print(line)
    if len(rep.failures) > args.max_failures:
        print(f"... and {len(rep.failures) - args.max_failures} more")
    print(rep.summary())
    return 0 if rep.ok else 1


if __name__ == "__main__":
    sys.exit(main())
