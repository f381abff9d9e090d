"""Reading a server's serial console log: the bounds and the tail rule both drivers share.

Owns: how much of a log one call may read (`MAX_TAIL`, `MAX_CHUNK`), turning the tail of a log
into its last lines, and checking a follower's offset and limit. Does not own where a log lives
(each driver keeps its own) nor who may read it (the compute service's policy).
"""

from __future__ import annotations

from ferry.domain.errors import BadRequest

MAX_TAIL = 1 << 20
"""At most this many bytes from the end of a log are read for `console_output`: a guest that has
printed for weeks must not make one API call load its whole log."""

MAX_CHUNK = 1 << 20
"""Upper bound of one `console_read` chunk, whatever `limit` the caller asks for."""


def last_lines(tail: bytes, length: int | None, *, partial: bool) -> str:
    """The last `length` lines (all when None) of `tail`, decoded as UTF-8 with replacement.

    `partial`: `tail` starts somewhere inside the log, so its first line is cut and is dropped."""
    if length is not None and length < 0:
        raise BadRequest(f"Invalid console length {length}: it must be 0 or more.")
    if partial:
        cut = tail.find(b"\n")
        tail = b"" if cut < 0 else tail[cut + 1 :]
    lines = tail.decode(errors="replace").splitlines(keepends=True)
    if length is not None:
        lines = lines[-length:] if length else []
    return "".join(lines)


def chunk_bounds(offset: int, limit: int) -> int:
    """Validate a follower's request and return how many bytes to read at most."""
    if offset < 0:
        raise BadRequest(f"Invalid console offset {offset}: it must be 0 or more.")
    if limit <= 0:
        raise BadRequest(f"Invalid console limit {limit}: it must be 1 or more.")
    return min(limit, MAX_CHUNK)


def complete_utf8(data: bytes) -> bytes:
    """`data` without a UTF-8 character cut short at its end (at most 3 bytes are dropped), so a
    follower that reads in chunks decodes every character whole."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 != 0x80:  # not a continuation byte: ASCII or the lead byte of a character
            need = 2 if byte >> 5 == 0b110 else 3 if byte >> 4 == 0b1110 else 4 if byte >> 3 == 0b11110 else 1
            return data[:-back] if need > back else data
    return data
