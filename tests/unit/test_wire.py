"""The wire codec: every argument and result type of the two driver contracts round-trips, and
anything outside its registry is refused (never pickle, never eval)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ferry.coordination.calls import REMOTE_METHODS, DriverCall, Target, check_host
from ferry.coordination.executor import REPLAY
from ferry.coordination.wire import (
    WireError,
    decode,
    decode_call,
    decode_error,
    encode,
    encode_call,
    encode_error,
)
from ferry.domain import errors as e
from ferry.domain.migration import MirrorCondition
from ferry.domain.model import BackendConfig, DiskChain, DiskFormat, LayerFile, VolumeLocation
from ferry.drivers.hypervisor.base import DiskInfo, HypervisorDriver, JobStatus, MirrorStatus, ServerSpec
from ferry.drivers.storage.base import BackendUsage, LayerCheck, StorageDriver, StoredLayer

CHAIN = DiskChain("v1", (LayerFile("/b/base.qcow2"), LayerFile("/b/top.raw", DiskFormat.RAW)))
VALUES: list[Any] = [
    None, True, False, 0, -7, 2**62, 1.5, "", "x", "ü", [], [1, [2, "3"]], (), (1, "a", None),
    {"a": 1, "b": (2, 3)}, {}, b"", b"\x00\xff console", Path("/srv/ferry/a.qcow2"),
    DiskFormat.QCOW2, JobStatus.READY, MirrorCondition.CONVERGED, Target.STORAGE,
    LayerFile("/x.qcow2"), CHAIN, VolumeLocation("a", "n", ("l1", "l2"), DiskFormat.RAW),
    ServerSpec("s", 2, 512, "/k", None, "console=ttyS0", LayerFile("/boot.qcow2"), (CHAIN, CHAIN)),
    DiskInfo("v", "v", ("/a", "/b")),
    MirrorStatus("j", JobStatus.RUNNING, 5, 10, False, False, True, None),
    MirrorStatus("j", JobStatus.CONCLUDED, 10, 10, True, True, True, "I/O error"),
    BackendUsage(1, 2), StoredLayer("n", "l", Path("/r/volume-n/l.qcow2"), 12.5),
    LayerCheck(True, True, 1 << 30, None), LayerCheck(False),
    BackendConfig("b", "/srv/b", DiskFormat.RAW, 10, 1.5, "file", 3),
    [MirrorStatus("j", JobStatus.READY, 1, 1, True, False, False)], (b"data", 42),
]  # fmt: skip


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_every_type_round_trips_through_json(value: Any) -> None:
    wire = json.loads(json.dumps(encode(value), allow_nan=False))
    back = decode(wire)
    assert back == value
    assert type(back) is type(value)
    assert encode(back) == encode(value), "nested members come back as members, not as strings"


@pytest.mark.parametrize("value", [object(), {1: "a"}, {"a"}, float("nan"), lambda: 1, Path])
def test_unregistered_values_are_refused(value: Any) -> None:
    with pytest.raises(WireError):
        encode(value)


@pytest.mark.parametrize(
    "wire",
    [
        {"$": "os.system", "v": "rm -rf /"},
        {"$": "Popen", "v": {}},
        {"a": 1},
        {"$": "LayerFile", "v": {"path": "/x", "evil": 1}},
        {"$": "LayerFile", "v": {}},
        {"$": "DiskFormat", "v": "vmdk"},
        {"$": "bytes", "v": "not base64!"},
        {"$": "tuple", "v": "abc"},
        {"$": "path", "v": 3},
        {"$": "tuple", "v": [], "x": 1},
    ],
)
def test_unknown_or_malformed_tags_are_refused(wire: Any) -> None:
    with pytest.raises(WireError):
        decode(wire)


def test_a_call_round_trips_and_only_contract_methods_are_calls() -> None:
    call = DriverCall(
        Target.STORAGE, "b", "copy_layer", (Path("/a"), VolumeLocation("b", "n", ("l",))), {"rate_limit": 5}
    )
    assert decode_call(json.loads(json.dumps(encode_call(call)))) == call
    for method in ("__init__", "_check_location", "config", "close", "volume_dir"):
        with pytest.raises(e.BadRequest):
            DriverCall(Target.STORAGE, "b", method)
    with pytest.raises(WireError):
        decode_call({**encode_call(call), "method": "__class__"})
    with pytest.raises(WireError):
        decode_call({**encode_call(call), "extra": 1})
    with pytest.raises(e.BadRequest):
        DriverCall(Target.HYPERVISOR, "b", "spawn")


def test_remote_methods_are_the_contracts_and_each_says_why_it_may_be_replayed() -> None:
    def public(cls: type) -> set[str]:
        return {n for n in vars(cls) if not n.startswith("_") and callable(getattr(cls, n))}

    # `on_host` is the contract addressed to another host: the proxy's own, never sent
    assert REMOTE_METHODS[Target.HYPERVISOR] == public(HypervisorDriver) - {"close", "on_host"}
    local = {"volume_dir", "layer_path", "stored_layers", "stored_partials", "stored_locations"}
    assert REMOTE_METHODS[Target.STORAGE] == public(StorageDriver) - local
    for target, methods in REMOTE_METHODS.items():
        assert set(REPLAY[target]) == methods


@pytest.mark.parametrize(
    "error",
    [
        e.BadRequest("bad"), e.Unauthorized("who"), e.Forbidden("no"), e.NotFound("gone"),
        e.Conflict("busy"), e.OverLimit("big"), e.DriverError("qemu-img failed", OSError("disk full")),
        e.FerryError("plain"), e.TooManyRequests("slow down", 7),
    ],
    ids=lambda e: type(e).__name__,
)  # fmt: skip
def test_ferry_errors_cross_as_their_class_and_message(error: e.FerryError) -> None:
    back = decode_error(json.loads(json.dumps(encode_error(error))))
    assert type(back) is type(error)
    assert back.message == error.message
    if isinstance(error, e.TooManyRequests):
        assert isinstance(back, e.TooManyRequests) and back.retry_after_s == 7


def test_other_errors_become_driver_errors_without_detail() -> None:
    class Private(e.NotFound):
        pass

    assert type(decode_error(encode_error(Private("x")))) is e.NotFound
    back = decode_error(encode_error(KeyError("/etc/secret")))
    assert type(back) is e.DriverError and back.message == "agent: KeyError"
    for bad in ({"type": "SystemExit", "message": "x"}, {"type": ["x"], "message": "m"}, "junk", {}):
        assert isinstance(decode_error(bad), e.DriverError)


@pytest.mark.parametrize("host", ["", "a b", "x" * 53, "../h", "h;drop"])
def test_host_names_must_fit_a_channel_name(host: str) -> None:
    with pytest.raises(e.BadRequest):
        check_host(host)
