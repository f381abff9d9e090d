"""JSON encoding of driver calls, their results and their errors: an explicit registry of types.

A value is plain JSON when it is None, a bool, an int, a finite float, a str or a list; every
other value is an object `{"$": tag, "v": ...}` whose tag names a registered type (a tuple, a
str-keyed dict, bytes as base64, a Path, a registered enum or frozen dataclass). Decoding builds
only registered types from their declared fields: an unknown tag or field is refused
(`WireError`). Never pickle, never eval.

Errors: a `FerryError` crosses as its nearest registered class and its message, and is raised
again on the caller as that class; any other exception becomes `DriverError("agent: <type>")`
(its traceback stays in the agent's log).
"""

from __future__ import annotations

import base64
import dataclasses
import math
from enum import StrEnum
from pathlib import Path, PurePath
from typing import Any

from ferry.coordination.calls import DriverCall, Target
from ferry.domain.errors import (
    BadRequest,
    Conflict,
    DriverError,
    FerryError,
    Forbidden,
    HostDown,
    NotFound,
    OverLimit,
    TooManyRequests,
    Unauthorized,
    Unavailable,
)
from ferry.domain.live import DiskSlot, LiveProgress, LiveSettings, LiveState
from ferry.domain.migration.convergence import MirrorCondition
from ferry.domain.model import BackendConfig, DiskChain, DiskFormat, LayerFile, VolumeLocation
from ferry.drivers.hypervisor.base import DiskInfo, JobStatus, MirrorStatus, ServerSpec
from ferry.drivers.storage.base import BackendUsage, LayerCheck, StoredLayer

Json = Any
"""A value `json.dumps` takes: None, bool, int, float, str, list, str-keyed dict."""

TAG = "$"


class WireError(DriverError):
    """A value that cannot cross: an unregistered type, a malformed or unknown tagged object."""


DATACLASSES: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (
        BackendConfig, BackendUsage, DiskChain, DiskInfo, DiskSlot, LayerCheck, LayerFile,
        LiveProgress, LiveSettings, MirrorStatus, ServerSpec, StoredLayer, VolumeLocation,
    )
}  # fmt: skip
ENUMS: dict[str, type[StrEnum]] = {
    cls.__name__: cls for cls in (DiskFormat, JobStatus, LiveState, MirrorCondition, Target)
}
ERRORS: dict[str, type[FerryError]] = {
    cls.__name__: cls
    for cls in (
        FerryError, BadRequest, Unauthorized, Forbidden, NotFound, Conflict, OverLimit, DriverError,
        TooManyRequests, Unavailable, HostDown,
    )
}  # fmt: skip
_BUILTIN_TAGS = ("tuple", "dict", "bytes", "path")
assert not set(_BUILTIN_TAGS) & (DATACLASSES.keys() | ENUMS.keys()), "tags must be unique"
assert not DATACLASSES.keys() & ENUMS.keys(), "tags must be unique"


# -- values ------------------------------------------------------------------------------------


def encode(value: Any) -> Json:
    if isinstance(value, StrEnum):  # before str: a StrEnum is a str, and must come back a member
        return _tagged_enum(value)
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise WireError(f"wire: cannot send the float {value}")
        return value
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, tuple):
        return {TAG: "tuple", "v": [encode(v) for v in value]}
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise WireError("wire: only str-keyed dicts can be sent")
        return {TAG: "dict", "v": {k: encode(v) for k, v in value.items()}}
    if isinstance(value, bytes):
        return {TAG: "bytes", "v": base64.b64encode(value).decode("ascii")}
    if isinstance(value, PurePath):
        return {TAG: "path", "v": str(value)}
    name = type(value).__name__
    if DATACLASSES.get(name) is type(value):
        fields = {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init}
        return {TAG: name, "v": fields}
    raise WireError(f"wire: a {name} cannot be sent (not a registered type)")


def _tagged_enum(value: StrEnum) -> Json:
    name = type(value).__name__
    if ENUMS.get(name) is not type(value):
        raise WireError(f"wire: a {name} cannot be sent (not a registered enum)")
    return {TAG: name, "v": value.value}


def decode(data: Json) -> Any:
    if data is None or isinstance(data, bool | int | float | str):
        return data
    if isinstance(data, list):
        return [decode(v) for v in data]
    if not isinstance(data, dict) or set(data) != {TAG, "v"} or not isinstance(data[TAG], str):
        raise WireError(f"wire: not a tagged value: {_short(data)}")
    tag, body = data[TAG], data["v"]
    try:
        return _decode_tagged(tag, body)
    except WireError:
        raise
    except (TypeError, ValueError, KeyError) as e:
        raise WireError(f"wire: malformed {tag}: {type(e).__name__}") from None


def _decode_tagged(tag: str, body: Json) -> Any:
    if tag == "tuple":
        return tuple(decode(v) for v in _expect(body, list, tag))
    if tag == "dict":
        return {str(k): decode(v) for k, v in _expect(body, dict, tag).items()}
    if tag == "bytes":
        return base64.b64decode(_expect(body, str, tag), validate=True)
    if tag == "path":
        return Path(_expect(body, str, tag))
    if tag in ENUMS:
        return ENUMS[tag](_expect(body, str, tag))
    if tag in DATACLASSES:
        cls = DATACLASSES[tag]
        fields = _expect(body, dict, tag)
        known = {f.name for f in dataclasses.fields(cls) if f.init}
        if unknown := set(fields) - known:
            raise WireError(f"wire: {tag} has no field {sorted(unknown)[0]!r}")
        return cls(**{k: decode(v) for k, v in fields.items()})
    raise WireError(f"wire: unknown type tag {tag!r}")


def _expect(body: Json, kind: type, tag: str) -> Any:
    if not isinstance(body, kind):
        raise WireError(f"wire: malformed {tag}")
    return body


def _short(data: Any) -> str:
    text = repr(data)
    return text if len(text) <= 80 else text[:77] + "..."


# -- calls -------------------------------------------------------------------------------------


def encode_call(call: DriverCall) -> Json:
    return {
        "target": call.target.value,
        "backend": call.backend,
        "method": call.method,
        "args": [encode(a) for a in call.args],
        "kwargs": {k: encode(v) for k, v in call.kwargs.items()},
    }


def decode_call(data: Json) -> DriverCall:
    try:
        if set(data) != {"target", "backend", "method", "args", "kwargs"}:
            raise WireError("wire: a driver call has exactly target, backend, method, args, kwargs")
        backend, method = data["backend"], data["method"]
        if not isinstance(method, str) or not (backend is None or isinstance(backend, str)):
            raise WireError("wire: malformed driver call")
        return DriverCall(
            Target(data["target"]),
            backend,
            method,
            tuple(decode(a) for a in _expect(data["args"], list, "args")),
            {str(k): decode(v) for k, v in _expect(data["kwargs"], dict, "kwargs").items()},
        )
    except (TypeError, ValueError, BadRequest) as e:
        raise WireError(f"wire: malformed driver call: {e}") from None


# -- errors ------------------------------------------------------------------------------------


def encode_error(exc: BaseException) -> Json:
    if not isinstance(exc, FerryError):
        return {"type": "DriverError", "message": f"agent: {type(exc).__name__}"}
    cls = next(c for c in type(exc).__mro__ if ERRORS.get(c.__name__) is c)
    out: dict[str, Json] = {"type": cls.__name__, "message": exc.message}
    if isinstance(exc, TooManyRequests):
        out["retry_after_s"] = exc.retry_after_s
    return out


def decode_error(data: Json) -> FerryError:
    """The error to raise on the caller; a malformed one is itself a DriverError."""
    if not isinstance(data, dict) or not isinstance(data.get("message"), str):
        return WireError(f"wire: malformed error: {_short(data)}")
    kind, message = data.get("type"), data["message"]
    cls = ERRORS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        return WireError(f"wire: unknown error type {_short(kind)}: {message}")
    if cls is TooManyRequests:
        return TooManyRequests(message, int(data.get("retry_after_s", 1)))
    return cls(message)
