"""HTTP client for the CLI: credentials from OS_CLOUD/clouds.yaml or OS_* variables, a keystoneauth1
session, and API errors turned into one-line messages."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from keystoneauth1 import exceptions as ks_exc
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3

CLOUDS_PATHS = ("clouds.yaml", "~/.config/openstack/clouds.yaml", "/etc/openstack/clouds.yaml")


class CliError(Exception):
    """An error to print as one line (no traceback); `status` is the HTTP status when the API said no."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def _auth_from_cloud(name: str) -> dict[str, Any]:
    candidates = [os.environ["OS_CLIENT_CONFIG_FILE"]] if os.environ.get("OS_CLIENT_CONFIG_FILE") else []
    candidates += list(CLOUDS_PATHS)
    for candidate in candidates:
        path = Path(candidate).expanduser()
        if path.is_file():
            clouds = (yaml.safe_load(path.read_text()) or {}).get("clouds", {})
            if name in clouds:
                return dict(clouds[name]["auth"])
    raise CliError(f"Cloud {name!r} not found in {', '.join(candidates)} (set OS_CLIENT_CONFIG_FILE).")


def _auth_from_env() -> dict[str, Any]:
    env = os.environ
    if not env.get("OS_AUTH_URL"):
        raise CliError(
            "No credentials: set OS_CLOUD (with a clouds.yaml, e.g. the one `ferry init` wrote) "
            "or OS_AUTH_URL, OS_USERNAME, OS_PASSWORD and OS_PROJECT_NAME."
        )
    return {
        "auth_url": env["OS_AUTH_URL"],
        "username": env.get("OS_USERNAME"),
        "password": env.get("OS_PASSWORD"),
        "project_name": env.get("OS_PROJECT_NAME"),
        "project_id": env.get("OS_PROJECT_ID"),
        "user_domain_name": env.get("OS_USER_DOMAIN_NAME", "Default"),
        "project_domain_name": env.get("OS_PROJECT_DOMAIN_NAME", "Default"),
    }


class Client:
    def __init__(self) -> None:
        cloud = os.environ.get("OS_CLOUD")
        auth = _auth_from_cloud(cloud) if cloud else _auth_from_env()
        keys = (
            "auth_url",
            "username",
            "password",
            "project_name",
            "project_id",
            "user_domain_name",
            "project_domain_name",
        )
        kwargs: dict[str, Any] = {k: auth[k] for k in keys if auth.get(k)}
        self.session = ks_session.Session(auth=v3.Password(**kwargs))

    def request(self, service: str, method: str, path: str, body: Any = None, **params: Any) -> Any:
        headers = {"OpenStack-API-Version": "volume 3.27"} if service == "block-storage" else {}
        try:
            resp = self.session.request(
                path,
                method,
                json=body,
                params={k: v for k, v in params.items() if v is not None},
                endpoint_filter={"service_type": service, "interface": "public"},
                headers=headers,
                raise_exc=True,
            )
        except ks_exc.HttpError as e:
            raise CliError(_message(e), e.http_status) from None
        except (ks_exc.ConnectFailure, ks_exc.DiscoveryFailure, ks_exc.EndpointNotFound) as e:
            raise CliError(f"Cannot reach Ferry: {e}") from None
        except ks_exc.Unauthorized as e:
            raise CliError(f"Authentication failed: {e}") from None
        if resp.status_code == 204 or not resp.content:
            return None
        return resp.json()

    def volume(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        return self.request("block-storage", method, path, body, **params)

    def compute(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        return self.request("compute", method, path, body, **params)


def _message(e: ks_exc.HttpError) -> str:
    try:
        assert e.response is not None
        body = e.response.json()
        inner = next(iter(body.values()))
        return f"{inner.get('message')} (HTTP {e.http_status})"
    except Exception:
        return f"{e.message or e} (HTTP {e.http_status})"
