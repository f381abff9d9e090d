"""Bad input on every endpoint of a real `ferry serve`: no token, a garbage token, another
project's URL, malformed JSON, a JSON array or scalar instead of an object, wrong types and
values, unknown and malformed ids. Every answer is a 4xx with OpenStack's error body; none is a 500.

The endpoint table is checked against the server's OpenAPI document, so a new endpoint without
an entry here fails `test_every_endpoint_is_in_the_table`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from testkit.server import Api, FerryServer

pytestmark = pytest.mark.db

UNKNOWN = "00000000-0000-4000-8000-000000000000"


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    body: dict[str, Any] | None = None
    """A well-formed body (None: the endpoint reads no body)."""
    unknown: int = 404
    """The answer when every id in the path is unknown."""

    @property
    def ids(self) -> list[str]:
        return [
            p
            for p in (
                "volume_id",
                "snapshot_id",
                "type_id",
                "attachment_id",
                "server_id",
                "flavor_id",
                "image_id",
                "key",
                "service_id",
                "hypervisor_id",
                "migration_id",
                "message_id",
                "host",
                "target",
                "project",
                "qos_id",
                "encryption_id",
                "alias",
                "host_name",
                "request_id",
                "user_id",
                "role_id",
                "cred_id",
                "domain_id",
                "endpoint_id",
            )
            if "{" + p + "}" in self.path
        ]

    def url(self, project_id: str, ident: str = UNKNOWN) -> str:
        path = self.path.replace("{project_id}", project_id)
        for p in self.ids:
            path = path.replace("{" + p + "}", quote(ident, safe=""))
        return path

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


V = "/volume/v3/{project_id}"
C = "/compute/v2.1"
G = "/image/v2"
K = "/identity/v3"
ENDPOINTS = [
    Endpoint("GET", f"{V}/volumes"),
    Endpoint("GET", f"{V}/volumes/detail"),
    Endpoint("POST", f"{V}/volumes", {"volume": {"size": 1, "snapshot_id": UNKNOWN}}),
    Endpoint("GET", f"{V}/volumes/{{volume_id}}"),
    Endpoint("PUT", f"{V}/volumes/{{volume_id}}", {"volume": {"name": "x"}}),
    Endpoint("DELETE", f"{V}/volumes/{{volume_id}}"),
    Endpoint("GET", f"{V}/volumes/{{volume_id}}/metadata"),
    Endpoint("POST", f"{V}/volumes/{{volume_id}}/metadata", {"metadata": {"a": "b"}}),
    Endpoint("PUT", f"{V}/volumes/{{volume_id}}/metadata", {"metadata": {"a": "b"}}),
    Endpoint("GET", f"{V}/volumes/{{volume_id}}/metadata/{{key}}"),
    # (the body names key "a", not the URL's: Cinder's 400 "mismatch" comes before the lookup)
    Endpoint("PUT", f"{V}/volumes/{{volume_id}}/metadata/{{key}}", {"meta": {"a": "b"}}, unknown=400),
    Endpoint("DELETE", f"{V}/volumes/{{volume_id}}/metadata/{{key}}"),
    Endpoint("GET", f"{V}/snapshots/{{snapshot_id}}/metadata"),
    Endpoint("POST", f"{V}/snapshots/{{snapshot_id}}/metadata", {"metadata": {"a": "b"}}),
    Endpoint("PUT", f"{V}/snapshots/{{snapshot_id}}/metadata", {"metadata": {"a": "b"}}),
    Endpoint("GET", f"{V}/snapshots/{{snapshot_id}}/metadata/{{key}}"),
    Endpoint("PUT", f"{V}/snapshots/{{snapshot_id}}/metadata/{{key}}", {"meta": {"a": "b"}}, unknown=400),
    Endpoint("DELETE", f"{V}/snapshots/{{snapshot_id}}/metadata/{{key}}"),
    Endpoint("POST", f"{V}/snapshots/{{snapshot_id}}/action", {"os-reset_status": {"status": "error"}}),
    Endpoint("GET", f"{V}/volumes/summary", unknown=200),
    Endpoint("GET", f"{V}/os-availability-zone"),
    Endpoint("GET", f"{V}/extensions"),
    Endpoint("GET", f"{V}/extensions/{{alias}}"),
    Endpoint("PUT", f"{V}/os-services/enable", {"host": "nowhere", "binary": "cinder-volume"}),
    Endpoint("PUT", f"{V}/os-services/disable", {"host": "nowhere", "binary": "cinder-volume"}),
    Endpoint(
        "PUT",
        f"{V}/os-services/disable-log-reason",
        {"host": "nowhere", "binary": "cinder-volume", "disabled_reason": "r"},
    ),
    Endpoint("PUT", f"{V}/os-services/freeze", {"host": "nowhere"}, unknown=400),
    Endpoint("PUT", f"{V}/os-services/thaw", {"host": "nowhere"}, unknown=400),
    Endpoint("GET", f"{V}/os-hosts"),
    Endpoint("GET", f"{V}/os-hosts/{{host_name}}"),
    Endpoint("POST", f"{V}/volumes/{{volume_id}}/action", {"os-extend": {"new_size": 2}}),
    Endpoint("GET", f"{V}/volumes/{{volume_id}}/migration"),
    Endpoint("GET", f"{V}/volumes/{{volume_id}}/location"),
    Endpoint("GET", f"{V}/messages"),
    Endpoint("GET", f"{V}/messages/{{message_id}}"),
    Endpoint("DELETE", f"{V}/messages/{{message_id}}"),
    Endpoint("GET", f"{V}/capabilities/{{host}}"),
    Endpoint("GET", f"{V}/snapshots"),
    Endpoint("GET", f"{V}/snapshots/detail"),
    Endpoint("POST", f"{V}/snapshots", {"snapshot": {"volume_id": UNKNOWN}}),
    Endpoint("GET", f"{V}/snapshots/{{snapshot_id}}"),
    Endpoint("PUT", f"{V}/snapshots/{{snapshot_id}}", {"snapshot": {"name": "x"}}),
    Endpoint("DELETE", f"{V}/snapshots/{{snapshot_id}}"),
    Endpoint("GET", f"{V}/types"),
    Endpoint(
        "POST",
        f"{V}/types",
        {"volume_type": {"name": "x", "extra_specs": {"volume_backend_name": "nope"}}},
        unknown=400,
    ),
    Endpoint("GET", f"{V}/types/{{type_id}}"),
    Endpoint("PUT", f"{V}/types/{{type_id}}", {"volume_type": {"description": "x"}}),
    Endpoint("DELETE", f"{V}/types/{{type_id}}"),
    Endpoint("GET", f"{V}/types/{{type_id}}/extra_specs"),
    Endpoint("POST", f"{V}/types/{{type_id}}/extra_specs", {"extra_specs": {"a": "b"}}),
    Endpoint("DELETE", f"{V}/types/{{type_id}}/extra_specs/{{key}}"),
    Endpoint("GET", f"{V}/types/{{type_id}}/extra_specs/{{key}}"),
    # the body must name the URL's key (Cinder checks that before it looks the type up)
    Endpoint("PUT", f"{V}/types/{{type_id}}/extra_specs/{{key}}", {"a": "b"}, unknown=400),
    Endpoint("POST", f"{V}/types/{{type_id}}/action", {"addProjectAccess": {"project": UNKNOWN}}),
    Endpoint("GET", f"{V}/types/{{type_id}}/os-volume-type-access"),
    Endpoint("GET", f"{V}/types/{{type_id}}/encryption"),
    Endpoint("GET", f"{V}/types/{{type_id}}/encryption/{{key}}"),
    Endpoint("POST", f"{V}/types/{{type_id}}/encryption", {"encryption": {"provider": "luks"}}),
    Endpoint("PUT", f"{V}/types/{{type_id}}/encryption/{{encryption_id}}", {"encryption": {"provider": "x"}}),
    Endpoint("DELETE", f"{V}/types/{{type_id}}/encryption/{{encryption_id}}"),
    Endpoint("GET", f"{V}/qos-specs"),
    Endpoint("POST", f"{V}/qos-specs", {"qos_specs": {"name": "x", "consumer": "nowhere"}}, unknown=400),
    Endpoint("GET", f"{V}/qos-specs/{{qos_id}}"),
    Endpoint("PUT", f"{V}/qos-specs/{{qos_id}}", {"qos_specs": {"a": "b"}}),
    Endpoint("DELETE", f"{V}/qos-specs/{{qos_id}}"),
    Endpoint("PUT", f"{V}/qos-specs/{{qos_id}}/delete_keys", {"keys": ["a"]}),
    Endpoint("GET", f"{V}/qos-specs/{{qos_id}}/associations"),
    # without `?vol_type_id=` these are refused before the QoS specs are looked up
    Endpoint("GET", f"{V}/qos-specs/{{qos_id}}/associate", unknown=400),
    Endpoint("GET", f"{V}/qos-specs/{{qos_id}}/disassociate", unknown=400),
    Endpoint("GET", f"{V}/qos-specs/{{qos_id}}/disassociate_all"),
    Endpoint("GET", f"{V}/scheduler-stats/get_pools"),
    Endpoint("GET", f"{V}/resource_filters"),
    Endpoint("GET", f"{V}/attachments"),
    Endpoint("GET", f"{V}/attachments/detail"),
    Endpoint("GET", f"{V}/attachments/{{attachment_id}}"),
    Endpoint("GET", f"{V}/os-services"),
    Endpoint("GET", f"{V}/os-quota-sets/{{target}}"),
    Endpoint("PUT", f"{V}/os-quota-sets/{{target}}", {"quota_set": {"volumes": 10}}),
    Endpoint("DELETE", f"{V}/os-quota-sets/{{target}}"),
    Endpoint("GET", f"{V}/os-quota-sets/{{target}}/defaults"),
    Endpoint("GET", f"{V}/os-quota-class-sets/{{name}}"),
    Endpoint("PUT", f"{V}/os-quota-class-sets/{{name}}", {"quota_class_set": {"volumes": 10}}),
    Endpoint("GET", f"{V}/limits"),
    Endpoint("GET", f"{V}/ferry-doctor"),
    Endpoint("POST", f"{V}/ferry-doctor"),
    Endpoint("GET", f"{C}/servers"),
    Endpoint("GET", f"{C}/servers/detail"),
    Endpoint(
        "POST", f"{C}/servers", {"server": {"name": "x", "imageRef": UNKNOWN, "flavorRef": "1"}}, unknown=400
    ),
    Endpoint("GET", f"{C}/servers/{{server_id}}"),
    Endpoint("DELETE", f"{C}/servers/{{server_id}}"),
    Endpoint("POST", f"{C}/servers/{{server_id}}/action", {"os-stop": None}),
    Endpoint("GET", f"{C}/servers/{{server_id}}/ferry-disks"),
    Endpoint("GET", f"{C}/servers/{{server_id}}/ferry-console"),
    Endpoint("GET", f"{C}/servers/{{server_id}}/os-volume_attachments"),
    Endpoint(
        "POST",
        f"{C}/servers/{{server_id}}/os-volume_attachments",
        {"volumeAttachment": {"volumeId": UNKNOWN}},
    ),
    Endpoint("GET", f"{C}/servers/{{server_id}}/os-volume_attachments/{{volume_id}}"),
    # swap is refused to everyone but the service role before anything is looked up (invariant 7)
    Endpoint(
        "PUT",
        f"{C}/servers/{{server_id}}/os-volume_attachments/{{volume_id}}",
        {"volumeAttachment": {"volumeId": UNKNOWN}},
        unknown=409,
    ),
    Endpoint("DELETE", f"{C}/servers/{{server_id}}/os-volume_attachments/{{volume_id}}"),
    Endpoint("GET", f"{C}/servers/{{server_id}}/ips"),
    Endpoint("GET", f"{C}/servers/{{server_id}}/ips/{{network}}"),
    Endpoint("GET", f"{C}/os-volumes"),
    Endpoint("GET", f"{C}/os-volumes/detail"),
    Endpoint("POST", f"{C}/os-volumes", {"volume": {"size": 1, "snapshot_id": UNKNOWN}}),
    Endpoint("GET", f"{C}/os-volumes/{{volume_id}}"),
    Endpoint("DELETE", f"{C}/os-volumes/{{volume_id}}"),
    Endpoint("GET", f"{C}/os-snapshots"),
    Endpoint("GET", f"{C}/os-snapshots/detail"),
    Endpoint("POST", f"{C}/os-snapshots", {"snapshot": {"volume_id": UNKNOWN}}),
    Endpoint("GET", f"{C}/os-snapshots/{{snapshot_id}}"),
    Endpoint("DELETE", f"{C}/os-snapshots/{{snapshot_id}}"),
    Endpoint("GET", f"{C}/flavors"),
    Endpoint("GET", f"{C}/flavors/detail"),
    Endpoint("GET", f"{C}/flavors/{{flavor_id}}"),
    Endpoint("POST", f"{C}/flavors", {"flavor": {"name": "x", "ram": 1, "vcpus": 1, "disk": 0}}, unknown=200),
    Endpoint("PUT", f"{C}/flavors/{{flavor_id}}", {"flavor": {"description": "d"}}, unknown=400),
    Endpoint("DELETE", f"{C}/flavors/{{flavor_id}}"),
    Endpoint("GET", f"{C}/flavors/{{flavor_id}}/os-flavor-access"),
    Endpoint("POST", f"{C}/flavors/{{flavor_id}}/action", {"addTenantAccess": {"tenant": "p"}}),
    Endpoint("GET", f"{C}/flavors/{{flavor_id}}/os-extra_specs"),
    Endpoint("POST", f"{C}/flavors/{{flavor_id}}/os-extra_specs", {"extra_specs": {"a": "b"}}),
    Endpoint("GET", f"{C}/flavors/{{flavor_id}}/os-extra_specs/{{key}}"),
    Endpoint("PUT", f"{C}/flavors/{{flavor_id}}/os-extra_specs/{{key}}", {"a": "b"}, unknown=400),
    Endpoint("DELETE", f"{C}/flavors/{{flavor_id}}/os-extra_specs/{{key}}"),
    Endpoint("GET", f"{C}/os-keypairs"),
    Endpoint(
        "POST", f"{C}/os-keypairs", {"keypair": {"name": "x", "public_key": "ssh-rsa bad"}}, unknown=400
    ),
    Endpoint("GET", f"{C}/os-keypairs/{{name}}"),
    Endpoint("DELETE", f"{C}/os-keypairs/{{name}}"),
    Endpoint("GET", f"{C}/os-quota-sets/{{target}}"),
    Endpoint("GET", f"{C}/os-quota-sets/{{target}}/detail"),
    Endpoint("GET", f"{C}/os-quota-sets/{{target}}/defaults"),
    Endpoint("PUT", f"{C}/os-quota-sets/{{target}}", {"quota_set": {"instances": 10}}),
    Endpoint("DELETE", f"{C}/os-quota-sets/{{target}}"),
    Endpoint("GET", f"{C}/os-quota-class-sets/{{name}}", unknown=200),
    Endpoint("PUT", f"{C}/os-quota-class-sets/{{name}}", {"quota_class_set": {"instances": 10}}, unknown=200),
    Endpoint("GET", f"{C}/limits", unknown=200),
    Endpoint("GET", f"{C}/os-availability-zone", unknown=200),
    Endpoint("GET", f"{C}/os-availability-zone/detail", unknown=200),
    Endpoint("PUT", f"{C}/servers/{{server_id}}", {"server": {"name": "x"}}),
    Endpoint("GET", f"{C}/servers/{{server_id}}/metadata"),
    Endpoint("POST", f"{C}/servers/{{server_id}}/metadata", {"metadata": {"a": "b"}}),
    Endpoint("PUT", f"{C}/servers/{{server_id}}/metadata", {"metadata": {"a": "b"}}),
    Endpoint("GET", f"{C}/servers/{{server_id}}/metadata/{{key}}"),
    Endpoint("PUT", f"{C}/servers/{{server_id}}/metadata/{{key}}", {"meta": {"a": "b"}}, unknown=400),
    Endpoint("DELETE", f"{C}/servers/{{server_id}}/metadata/{{key}}"),
    Endpoint("GET", f"{C}/servers/{{server_id}}/tags"),
    Endpoint("PUT", f"{C}/servers/{{server_id}}/tags", {"tags": []}),
    Endpoint("DELETE", f"{C}/servers/{{server_id}}/tags"),
    Endpoint("GET", f"{C}/servers/{{server_id}}/tags/{{tag}}"),
    Endpoint("PUT", f"{C}/servers/{{server_id}}/tags/{{tag}}"),
    Endpoint("DELETE", f"{C}/servers/{{server_id}}/tags/{{tag}}"),
    Endpoint("GET", f"{C}/images"),
    Endpoint("GET", f"{C}/images/detail"),
    Endpoint("GET", f"{C}/images/{{image_id}}"),
    Endpoint("GET", f"{C}/os-services"),
    Endpoint("PUT", f"{C}/os-services/{{service_id}}", {"status": "disabled"}),
    # by host and binary (the legacy updates, what a 2.1 client sends): nowhere, so nothing changes
    Endpoint("PUT", f"{C}/os-services/disable", {"host": "nowhere", "binary": "nova-compute"}),
    Endpoint(
        "PUT",
        f"{C}/os-services/disable-log-reason",
        {"host": "nowhere", "binary": "nova-compute", "disabled_reason": "r"},
    ),
    Endpoint("PUT", f"{C}/os-services/enable", {"host": "nowhere", "binary": "nova-compute"}),
    Endpoint("GET", f"{C}/servers/{{server_id}}/migrations"),
    Endpoint("GET", f"{C}/servers/{{server_id}}/migrations/{{migration_id}}"),
    Endpoint("DELETE", f"{C}/servers/{{server_id}}/migrations/{{migration_id}}"),
    Endpoint(
        "POST", f"{C}/servers/{{server_id}}/migrations/{{migration_id}}/action", {"force_complete": None}
    ),
    Endpoint("GET", f"{C}/os-migrations"),
    Endpoint("GET", f"{C}/servers/{{server_id}}/os-instance-actions"),
    Endpoint("GET", f"{C}/servers/{{server_id}}/os-instance-actions/{{request_id}}"),
    Endpoint("GET", f"{C}/os-hypervisors"),
    Endpoint("GET", f"{C}/os-hypervisors/detail"),
    Endpoint("GET", f"{C}/os-hypervisors/{{hypervisor_id}}"),
    Endpoint("POST", f"{C}/ferry-images", {"image": {"name": "x", "kernel": "/nonexistent/vmlinuz"}}),
    Endpoint("GET", "/identity/v3/domains"),
    Endpoint("POST", "/identity/v3/projects", {"project": {"name": "x" * 65}}, unknown=400),
    Endpoint("GET", "/identity/v3/projects/{project}"),
    Endpoint("DELETE", "/identity/v3/projects/{project}"),
    Endpoint("GET", "/identity/v3/auth/catalog"),
    Endpoint("GET", "/identity/v3/projects"),
    Endpoint("GET", "/identity/v3/auth/tokens"),
    Endpoint("HEAD", "/identity/v3/auth/tokens"),
    Endpoint("DELETE", "/identity/v3/auth/tokens"),
    Endpoint("POST", "/identity/v3/auth/tokens", {"auth": {}}, unknown=400),
    Endpoint("PATCH", "/identity/v3/projects/{project}", {"project": {"description": "d"}}),
    Endpoint("GET", "/identity/v3/domains/{domain_id}"),
    Endpoint("POST", f"{K}/users", {"user": {"name": "x" * 256}}, unknown=400),
    Endpoint("GET", f"{K}/users"),
    Endpoint("GET", f"{K}/users/{{user_id}}"),
    Endpoint("PATCH", f"{K}/users/{{user_id}}", {"user": {"description": "d"}}),
    Endpoint("DELETE", f"{K}/users/{{user_id}}"),
    Endpoint(
        "POST",
        f"{K}/users/{{user_id}}/password",
        {"user": {"password": "a", "original_password": "b"}},
    ),
    Endpoint("GET", f"{K}/users/{{user_id}}/projects"),
    Endpoint("GET", f"{K}/auth/projects"),
    Endpoint("GET", f"{K}/roles"),
    Endpoint("POST", f"{K}/roles", unknown=403),
    Endpoint("GET", f"{K}/roles/{{role_id}}"),
    Endpoint("PUT", f"{K}/projects/{{project}}/users/{{user_id}}/roles/{{role_id}}"),
    Endpoint("HEAD", f"{K}/projects/{{project}}/users/{{user_id}}/roles/{{role_id}}"),
    Endpoint("DELETE", f"{K}/projects/{{project}}/users/{{user_id}}/roles/{{role_id}}"),
    Endpoint("GET", f"{K}/projects/{{project}}/users/{{user_id}}/roles"),
    Endpoint("GET", f"{K}/role_assignments"),
    Endpoint("PUT", f"{K}/system/users/{{user_id}}/roles/{{role_id}}"),
    Endpoint("HEAD", f"{K}/system/users/{{user_id}}/roles/{{role_id}}"),
    Endpoint("DELETE", f"{K}/system/users/{{user_id}}/roles/{{role_id}}"),
    Endpoint("GET", f"{K}/system/users/{{user_id}}/roles"),
    # only a user creates their own credentials: an admin is refused before the lookup
    Endpoint(
        "POST",
        f"{K}/users/{{user_id}}/application_credentials",
        {"application_credential": {"name": "x"}},
        unknown=403,
    ),
    Endpoint("GET", f"{K}/users/{{user_id}}/application_credentials"),
    Endpoint("GET", f"{K}/users/{{user_id}}/application_credentials/{{cred_id}}"),
    Endpoint("DELETE", f"{K}/users/{{user_id}}/application_credentials/{{cred_id}}"),
    Endpoint("GET", f"{K}/services"),
    Endpoint("POST", f"{K}/services", unknown=403),
    Endpoint("GET", f"{K}/services/{{service_id}}"),
    Endpoint("GET", f"{K}/endpoints"),
    Endpoint("POST", f"{K}/endpoints", unknown=403),
    Endpoint("GET", f"{K}/endpoints/{{endpoint_id}}"),
    # Glance (flat bodies; PATCH and PUT …/file check their Content-Type before any lookup: 415)
    Endpoint("GET", f"{G}/images"),
    Endpoint("POST", f"{G}/images", {"visibility": "private", "name": "x"}),
    Endpoint("GET", f"{G}/images/{{image_id}}"),
    Endpoint("PATCH", f"{G}/images/{{image_id}}", unknown=415),
    Endpoint("DELETE", f"{G}/images/{{image_id}}"),
    Endpoint("PUT", f"{G}/images/{{image_id}}/file", unknown=415),
    Endpoint("GET", f"{G}/images/{{image_id}}/file"),
    Endpoint("POST", f"{G}/images/{{image_id}}/actions/deactivate"),
    Endpoint("POST", f"{G}/images/{{image_id}}/actions/reactivate"),
    Endpoint("PUT", f"{G}/images/{{image_id}}/tags/{{tag}}"),
    Endpoint("DELETE", f"{G}/images/{{image_id}}/tags/{{tag}}"),
    Endpoint("GET", f"{G}/schemas/image"),
    Endpoint("GET", f"{G}/schemas/images"),
]
AUTHENTICATED = [e for e in ENDPOINTS if str(e) != "POST /identity/v3/auth/tokens"]
WITH_BODY = [e for e in ENDPOINTS if e.body is not None]
WITH_IDS = [e for e in ENDPOINTS if e.ids]
PROJECT_SCOPED = [e for e in ENDPOINTS if e.path.startswith(V)]


# -- fixtures and helpers --------------------------------------------------------------------
@pytest.fixture(scope="module", autouse=True)
def no_server_errors(server: FerryServer) -> Iterator[None]:
    yield
    assert server.log_problems() == []


http = httpx.Client(timeout=60)


def call(server: FerryServer, method: str, path: str, token: str | None, **kw: Any) -> httpx.Response:
    headers = {"X-Auth-Token": token} if token is not None else {}
    return http.request(method, server.base + path, headers={**headers, **kw.pop("headers", {})}, **kw)


def error(resp: httpx.Response, code: int, what: object = "") -> str:
    """Assert an OpenStack-shaped error body with this code and return its message."""
    kinds = {
        400: "badRequest",
        401: "unauthorized",
        403: "forbidden",
        404: "itemNotFound",
        405: "badMethod",
        409: "conflictingRequest",
        413: "overLimit",
        415: "unsupportedMediaType",
    }
    assert resp.status_code == code, (
        f"{what}: {resp.request.method} {resp.request.url} → {resp.status_code} {resp.text[:500]}"
    )
    if resp.request.method == "HEAD":
        return ""
    body = resp.json()
    kind = "error" if resp.request.url.path.startswith("/identity") else kinds[code]  # Keystone's shape
    assert list(body) == [kind], f"{what}: {body}"
    assert body[kind]["code"] == code
    message = body[kind]["message"]
    assert isinstance(message, str) and message, f"{what}: {body}"
    return message


# -- coverage of the table -------------------------------------------------------------------
def test_every_endpoint_is_in_the_table(server: FerryServer) -> None:
    spec = http.get(server.base + "/openapi.json").json()
    served = {f"{m.upper()} {p}" for p, ops in spec["paths"].items() for m in ops}
    assert served == {str(e) for e in ENDPOINTS}


# -- authentication --------------------------------------------------------------------------
@pytest.mark.parametrize("endpoint", AUTHENTICATED, ids=str)
@pytest.mark.parametrize("token", [None, "garbage"])  # more kinds: test_api_identity
def test_without_a_valid_token_every_endpoint_is_401(
    server: FerryServer, admin: Api, endpoint: Endpoint, token: str | None
) -> None:
    resp = call(server, endpoint.method, endpoint.url(admin.project_id), token, json=endpoint.body)
    error(resp, 401, endpoint)
    assert resp.headers["WWW-Authenticate"] == 'Keystone uri="/identity/v3"'


@pytest.mark.parametrize("endpoint", PROJECT_SCOPED, ids=str)
def test_another_projects_url_is_403(server: FerryServer, admin: Api, demo: Api, endpoint: Endpoint) -> None:
    resp = call(server, endpoint.method, endpoint.url(admin.project_id), demo.token, json=endpoint.body)
    assert "scoped to project" in error(resp, 403, endpoint)


# -- bodies ----------------------------------------------------------------------------------
MALFORMED = [
    b"",
    b"{",
    b'{"a": 1} trailing',
    b"\xff\xfe\x00",
    b"[" * 100_000,
    b"[]",
    b'"volume"',
    b"null",
    b"{}",
]


@pytest.mark.parametrize("endpoint", WITH_BODY, ids=str)
@pytest.mark.parametrize("raw", MALFORMED, ids=lambda r: repr(r[:12]))
def test_malformed_body_is_400(server: FerryServer, admin: Api, endpoint: Endpoint, raw: bytes) -> None:
    resp = call(
        server,
        endpoint.method,
        endpoint.url(admin.project_id),
        admin.token,
        content=raw,
        headers={"Content-Type": "application/json"},
    )
    if raw == b"{}" and str(endpoint) == f"POST {G}/images":  # Glance: every image field is optional
        assert resp.status_code == 201 and resp.json()["status"] == "queued", resp.text
        return
    error(resp, 400, endpoint)


@pytest.mark.parametrize(
    "endpoint", [e for e in WITH_BODY if e.path != f"{C}/servers/{{server_id}}/action"], ids=str
)  # os-stop/os-start take no arguments: their value is ignored, as in Nova
def test_wrapper_of_the_wrong_type_is_400(server: FerryServer, admin: Api, endpoint: Endpoint) -> None:
    assert endpoint.body is not None
    key = next(iter(endpoint.body))  # the wrapper, or a flat body's first field
    for inner in ([], "x", 5, True, None, [endpoint.body[key]]):
        if inner == endpoint.body[key]:
            continue  # the well-formed value (`{"force_complete": null}`) is not of the wrong type
        resp = call(server, endpoint.method, endpoint.url(admin.project_id), admin.token, json={key: inner})
        error(resp, 400, f"{endpoint} {key}={inner!r}")


def poison(value: Any) -> Any:
    """The same document with a NUL in every key and string."""
    if isinstance(value, str):
        return value + "\x00"
    if isinstance(value, dict):
        return {poison(k): poison(v) for k, v in value.items()}
    if isinstance(value, list):
        return [poison(v) for v in value]
    return value


@pytest.mark.parametrize("endpoint", WITH_BODY, ids=str)
def test_nul_in_a_body_is_400(server: FerryServer, admin: Api, endpoint: Endpoint) -> None:
    assert endpoint.body is not None
    key = next(iter(endpoint.body))  # the wrapper, or a flat body's first field
    bodies = [poison(endpoint.body), {key: poison(endpoint.body[key])}]
    if str(endpoint) == f"POST {V}/volumes":
        bodies += [
            {"volume": {"size": 1, "name": "a\x00b"}},
            {"volume": {"size": 1, "metadata": {"k\x00": "v"}}},
        ]
    for body in (b for b in bodies if "\\u0000" in json.dumps(b)):
        resp = call(server, endpoint.method, endpoint.url(admin.project_id), admin.token, json=body)
        assert "NUL" in error(resp, 400, f"{endpoint} {body!r}")


def test_body_too_large_is_refused(server: FerryServer, admin: Api) -> None:
    big = json.dumps({"volume": {"size": 1, "description": "x" * 2_000_000}})
    resp = call(server, "POST", f"/volume/v3/{admin.project_id}/volumes", admin.token, content=big)
    assert "too large" in error(resp, 413)


# -- ids -------------------------------------------------------------------------------------
BAD_IDS = [UNKNOWN, "not-a-uuid", "x" * 300, "../../etc/passwd", "1; DROP TABLE volumes", "\x00"]


@pytest.mark.parametrize("endpoint", WITH_IDS, ids=str)
@pytest.mark.parametrize("ident", BAD_IDS)
def test_unknown_or_malformed_ids(server: FerryServer, admin: Api, endpoint: Endpoint, ident: str) -> None:
    resp = call(
        server, endpoint.method, endpoint.url(admin.project_id, ident), admin.token, json=endpoint.body
    )
    if "/" in ident:  # no route has a segment with a slash
        error(resp, 404, endpoint)
    elif "\x00" in ident:
        assert resp.status_code in (400, endpoint.unknown), resp.text
        error(resp, resp.status_code, endpoint)
    else:
        error(resp, endpoint.unknown, endpoint)


@pytest.mark.parametrize(
    "query",
    [
        {"name": "\x00"},
        {"status": "\x00"},
        {"marker": "\x00"},
        {"sort": "\x00"},
        {"all_tenants": "\x00"},
        {"volume_id": "\x00"},
        {"name": "x" * 5000},
    ],
)
def test_odd_query_strings_on_lists(server: FerryServer, admin: Api, query: dict[str, str]) -> None:
    for path in ("/volumes", "/volumes/detail", "/snapshots"):
        resp = call(server, "GET", f"/volume/v3/{admin.project_id}{path}", admin.token, params=query)
        assert resp.status_code in (200, 400), resp.text
        if resp.status_code == 400:
            error(resp, 400)


# -- values ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "volume",
    [
        {"size": "abc"},
        {"size": True},
        {"size": False},
        {"size": 1.5},
        {"size": 1.0},
        {"size": -1},
        {"size": 0},
        {"size": 10**30},
        {"size": 16 * 1024 + 1},
        {"size": ""},
        {"size": "-1"},
        {"size": " 1"},
        {"size": "1e3"},
        {"size": "0x10"},
        {"size": [1]},
        {"size": {"gib": 1}},
        {"size": None},
        {},
        {"size": "9" * 5000},
        {"size": 1, "name": 5},
        {"size": 1, "name": ["x"]},
        {"size": 1, "name": "x" * 256},
        {"size": 1, "description": "x" * 4097},
        {"size": 1, "metadata": {"a": 1}},
        {"size": 1, "metadata": "a=b"},
        {"size": 1, "metadata": {"": "x"}},
        {"size": 1, "metadata": {f"k{i}": "v" for i in range(65)}},
        {"size": 1, "volume_type": 5},
        {"size": 1, "snapshot_id": 5},
        {"size": 1, "source_volid": ["x"]},
        {"size": 1, "snapshot_id": UNKNOWN, "source_volid": UNKNOWN},
    ],
)
def test_volume_create_bad_values(server: FerryServer, demo: Api, volume: dict[str, Any]) -> None:
    resp = demo.volume("POST", "/volumes", json={"volume": volume})
    error(resp, 400, volume)


def test_volume_create_nan_size(server: FerryServer, demo: Api) -> None:
    for raw in (
        '{"volume": {"size": NaN}}',
        '{"volume": {"size": Infinity}}',
        '{"volume": {"size": -Infinity}}',
    ):
        error(demo.volume("POST", "/volumes", content=raw), 400, raw)


def test_no_volume_was_created_by_bad_requests(demo: Api) -> None:
    assert demo.ok(demo.volume("GET", "/volumes"))["volumes"] == []


@pytest.fixture(scope="module")
def volume(demo: Api) -> dict[str, Any]:
    vol: dict[str, Any] = demo.ok(
        demo.volume("POST", "/volumes", json={"volume": {"size": 1, "name": "target"}}), 202
    )["volume"]
    return vol


@pytest.mark.parametrize(
    "change",
    [
        {"name": 5},
        {"name": "x" * 256},
        {"description": 5},
        {"metadata": {"a": 1}},
        {"metadata": "x"},
        {"metadata": ["a"]},
        {"metadata": {"k" * 256: "v"}},
    ],
)
def test_volume_update_bad_values(demo: Api, volume: dict[str, Any], change: dict[str, Any]) -> None:
    error(demo.volume("PUT", f"/volumes/{volume['id']}", json={"volume": change}), 400, change)
    after = demo.ok(demo.volume("GET", f"/volumes/{volume['id']}"))["volume"]
    assert (after["name"], after["metadata"]) == ("target", {})


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"os-extend": {"new_size": 2}, "os-retype": {"new_type": "x"}},
        {"os-bogus": {}},
        {"os-extend": "2"},
        {"os-extend": []},
        {"os-extend": None},
        {"os-extend": {"new_size": "abc"}},
        {"os-extend": {"new_size": True}},
        {"os-extend": {"new_size": 2.5}},
        {"os-extend": {"new_size": 0}},
        {"os-extend": {"new_size": -5}},
        {"os-extend": {"new_size": 10**30}},
        {"os-extend": {"size": 2}},
        {"os-retype": {"new_type": 5}},
        {"os-retype": []},
        {"os-migrate_volume": None},
        {"os-migrate_volume": {"host": 5}},
        {"ferry-migrate_set_speed": {"bytes_per_sec": "fast"}},
        {"ferry-migrate_set_speed": {"bytes_per_sec": -1}},
        {"ferry-migrate_set_speed": None},
    ],
)
def test_volume_action_bad_bodies(
    server: FerryServer, admin: Api, demo: Api, volume: dict[str, Any], body: dict[str, Any]
) -> None:
    as_admin = Api(server.base, admin.token, demo.project_id)  # admin: no 403 before the body is read
    msg = error(as_admin.volume("POST", f"/volumes/{volume['id']}/action", json=body), 400, body)
    if "os-bogus" in body:
        assert "Unknown volume action 'os-bogus'" in msg and "os-extend" in msg
    after = demo.ok(demo.volume("GET", f"/volumes/{volume['id']}"))["volume"]
    assert (after["size"], after["status"]) == (1, "available")


@pytest.mark.parametrize(
    "snapshot",
    [
        {"volume_id": 5},
        {"volume_id": "{id}", "name": 5},
        {"volume_id": "{id}", "metadata": {"a": 1}},
        {"volume_id": "{id}", "description": "x" * 4097},
        {"volume_id": "{id}", "force": 5},
    ],
)
def test_snapshot_create_bad_values(demo: Api, volume: dict[str, Any], snapshot: dict[str, Any]) -> None:
    body = {k: (volume["id"] if v == "{id}" else v) for k, v in snapshot.items()}
    error(demo.volume("POST", "/snapshots", json={"snapshot": body}), 400, body)
    assert demo.ok(demo.volume("GET", "/snapshots"))["snapshots"] == []


@pytest.mark.parametrize("snapshot", [{}, {"volume_id": None}, {"name": "x"}])
def test_snapshot_create_without_a_volume_is_404(demo: Api, snapshot: dict[str, Any]) -> None:
    # Cinder looks the (missing) volume up and finds none (tempest's
    # test_create_snapshot_without_passing_volume_id); Ferry answered 400 before.
    error(demo.volume("POST", "/snapshots", json={"snapshot": snapshot}), 404, snapshot)
    assert demo.ok(demo.volume("GET", "/snapshots"))["snapshots"] == []


@pytest.mark.parametrize(
    "params",
    [
        {"limit": -1},
        {"limit": "x"},
        {"sort": "size:up"},
        {"sort": "secret"},
        {"sort_key": "secret"},
        {"sort_dir": "up"},
    ],
)
def test_snapshot_list_bad_params(demo: Api, params: dict[str, Any]) -> None:
    error(demo.volume("GET", "/snapshots/detail", params=params), 400, params)


@pytest.mark.parametrize("marker", ["x", UNKNOWN])
def test_snapshot_list_unknown_marker_is_404(demo: Api, marker: str) -> None:
    """Cinder's MarkerNotFound is a 404 (tempest's test_list_snapshots_invalid_param_marker)."""
    error(demo.volume("GET", "/snapshots/detail", params={"marker": marker}), 404, marker)


def test_snapshot_update_bad_values(demo: Api, volume: dict[str, Any]) -> None:
    snap = demo.ok(demo.volume("POST", "/snapshots", json={"snapshot": {"volume_id": volume["id"]}}), 202)[
        "snapshot"
    ]
    for change in ({"name": 5}, {"metadata": {"a": 1}}, {"metadata": "x"}, {"name": "x" * 256}):
        error(demo.volume("PUT", f"/snapshots/{snap['id']}", json={"snapshot": change}), 400, change)
    assert demo.volume("DELETE", f"/snapshots/{snap['id']}").status_code == 202


@pytest.fixture(scope="module")
def vtype(admin: Api) -> str:
    return str(
        admin.ok(admin.volume("POST", "/types", json={"volume_type": {"name": "specs-target"}}))[
            "volume_type"
        ]["id"]
    )


@pytest.mark.parametrize(
    "body",
    [
        {"extra_specs": []},
        {"extra_specs": {"a": 1}},
        {"extra_specs": {"a": None}},
        {"extra_specs": {"volume_backend_name": "nowhere"}},
        {"specs": {"a": "b"}},
    ],
)
def test_extra_specs_bad_values(admin: Api, vtype: str, body: dict[str, Any]) -> None:
    tid = vtype
    error(admin.volume("POST", f"/types/{tid}/extra_specs", json=body), 400, body)
    assert admin.ok(admin.volume("GET", f"/types/{tid}/extra_specs")) == {"extra_specs": {}}


@pytest.mark.parametrize(
    "body",
    [
        {"server": {}},
        {"server": {"name": "x"}},
        {"server": {"name": "", "imageRef": "i", "flavorRef": "1"}},
        {"server": {"name": 5, "imageRef": "i", "flavorRef": "1"}},
        {"server": {"name": "x", "imageRef": "nope", "flavorRef": "1"}},
    ],
)
def test_server_create_bad_values(admin: Api, body: dict[str, Any]) -> None:
    error(admin.compute("POST", "/servers", json=body), 400, body)
    assert admin.ok(admin.compute("GET", "/servers"))["servers"] == []


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"bogus": None},
        {"reboot": {"type": 5}},
        {"reboot": "HARD"},
        {"os-stop": None, "os-start": None},
        {"os-getConsoleOutput": None},
        {"os-getConsoleOutput": {"length": -2}},
        {"os-getConsoleOutput": {"length": "ten"}},
        {"os-getConsoleOutput": {"length": "1" * 5000}},
        {"os-getConsoleOutput": {"lines": 5}},
    ],
)
def test_server_action_bad_bodies(admin: Api, body: dict[str, Any]) -> None:
    error(admin.compute("POST", f"/servers/{UNKNOWN}/action", json=body), 400, body)


@pytest.mark.parametrize(
    "body",
    [
        {"volumeAttachment": {}},
        {"volumeAttachment": {"volumeId": 5}},
        {"volumeAttachment": {"volumeId": ""}},
        {"volumeId": UNKNOWN},
    ],
)
def test_attach_bad_bodies(admin: Api, body: dict[str, Any]) -> None:
    error(admin.compute("POST", f"/servers/{UNKNOWN}/os-volume_attachments", json=body), 400, body)


# -- routes and methods ----------------------------------------------------------------------
def test_unknown_route_is_404_with_an_error_body(server: FerryServer, admin: Api) -> None:
    for path in (
        "/nothing",
        f"/volume/v3/{admin.project_id}/nothing",
        "/compute/v2.1/nothing",
        "/identity/v2.0",
    ):
        error(call(server, "GET", path, admin.token), 404, path)


def test_wrong_method_is_405_with_an_error_body(server: FerryServer, admin: Api) -> None:
    for method, path in [
        ("PATCH", f"/volume/v3/{admin.project_id}/volumes"),
        ("DELETE", f"/volume/v3/{admin.project_id}/volumes"),
        ("PUT", "/identity/v3/auth/tokens"),
        ("PATCH", "/compute/v2.1/flavors"),
    ]:
        error(call(server, method, path, admin.token), 405, f"{method} {path}")
