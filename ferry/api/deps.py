"""Request dependencies: each service a router uses, and the caller's context from X-Auth-Token.

Routers name the services they call (`volumes: VolumeService = Depends(deps.volumes)`); only this
module and `app.py` know the assembled control plane (`Ferry`), which must not reach a router.
The service getters are `async` only so that FastAPI calls them on the event loop: it runs a plain
function dependency in its thread pool, a hop that costs more than the lookup itself.
"""

from __future__ import annotations

from dataclasses import replace

from fastapi import Request

from ferry.api.errors import request_id
from ferry.api.schemas import text_problem
from ferry.domain.errors import BadRequest, Forbidden, Unauthorized
from ferry.services.app import Ferry
from ferry.services.app_credentials import AppCredentialService
from ferry.services.compute import ComputeService
from ferry.services.compute_quotas import ComputeQuotas
from ferry.services.context import RequestContext
from ferry.services.doctor import Doctor
from ferry.services.flavors import FlavorService
from ferry.services.glance import GlanceService
from ferry.services.hosts import HostRegistry
from ferry.services.identity import IdentityService
from ferry.services.image_data import ImageData
from ferry.services.images import ImageService
from ferry.services.instance_actions import InstanceActions
from ferry.services.keypairs import KeyPairs
from ferry.services.messages import MessageService
from ferry.services.metadata import MetadataService
from ferry.services.migration import MigrationService
from ferry.services.pools import PoolService
from ferry.services.projects import ProjectService
from ferry.services.qos import QosService
from ferry.services.quotas import QuotaService
from ferry.services.role_assignments import RoleAssignmentService
from ferry.services.server_details import ServerDetailService
from ferry.services.server_migration import LiveMigrationService
from ferry.services.snapshots import SnapshotService
from ferry.services.storage import Backends
from ferry.services.summary import VolumeSummary
from ferry.services.type_access import TypeAccess
from ferry.services.types import TypeService
from ferry.services.users import UserService
from ferry.services.volume_admin import VolumeAdmin
from ferry.services.volume_images import VolumeUploads
from ferry.services.volume_services import VolumeServices
from ferry.services.volumes import VolumeService


def _ferry(request: Request) -> Ferry:
    app: Ferry = request.app.state.ferry
    return app


async def identity(request: Request) -> IdentityService:
    return _ferry(request).identity


async def volumes(request: Request) -> VolumeService:
    return _ferry(request).volumes


async def snapshots(request: Request) -> SnapshotService:
    return _ferry(request).snapshots


async def metadata(request: Request) -> MetadataService:
    return _ferry(request).metadata


async def volume_admin(request: Request) -> VolumeAdmin:
    return _ferry(request).volume_admin


async def volume_services(request: Request) -> VolumeServices:
    return _ferry(request).volume_services


async def volume_summary(request: Request) -> VolumeSummary:
    return _ferry(request).volume_summary


async def types(request: Request) -> TypeService:
    return _ferry(request).types


async def messages(request: Request) -> MessageService:
    return _ferry(request).messages


async def pools(request: Request) -> PoolService:
    return _ferry(request).pools


async def projects(request: Request) -> ProjectService:
    return _ferry(request).projects


async def users(request: Request) -> UserService:
    return _ferry(request).users


async def role_assignments(request: Request) -> RoleAssignmentService:
    return _ferry(request).role_assignments


async def app_credentials(request: Request) -> AppCredentialService:
    return _ferry(request).app_credentials


async def quotas(request: Request) -> QuotaService:
    return _ferry(request).quotas


async def compute_quotas(request: Request) -> ComputeQuotas:
    return _ferry(request).compute_quotas


async def keypairs(request: Request) -> KeyPairs:
    return _ferry(request).keypairs


async def flavors(request: Request) -> FlavorService:
    return _ferry(request).flavors


async def server_details(request: Request) -> ServerDetailService:
    return _ferry(request).server_details


async def type_access(request: Request) -> TypeAccess:
    return _ferry(request).type_access


async def qos(request: Request) -> QosService:
    return _ferry(request).qos


async def migrations(request: Request) -> MigrationService:
    return _ferry(request).migrations


async def backends(request: Request) -> Backends:
    return _ferry(request).backends


async def compute(request: Request) -> ComputeService:
    return _ferry(request).compute


async def live_migrations(request: Request) -> LiveMigrationService:
    return _ferry(request).live


async def images(request: Request) -> ImageService:
    return _ferry(request).images


async def instance_actions(request: Request) -> InstanceActions:
    return _ferry(request).instance_actions


async def glance(request: Request) -> GlanceService:
    return _ferry(request).glance


async def image_data(request: Request) -> ImageData:
    return _ferry(request).image_data


async def volume_uploads(request: Request) -> VolumeUploads:
    return _ferry(request).volume_uploads


async def hosts(request: Request) -> HostRegistry:
    return _ferry(request).hosts


async def doctor(request: Request) -> Doctor:
    return _ferry(request).doctor


def context(request: Request) -> RequestContext:
    token = request.headers.get("X-Auth-Token")
    if not token:
        raise Unauthorized("The request you have made requires authentication.")
    ctx = _ferry(request).identity.validate(token).context
    ctx = replace(ctx, request_id=str(request.scope.get("state", {}).get("request_id", "")))
    params = (*request.path_params.items(), *request.query_params.multi_items())
    for name, value in params:
        problem = text_problem(str(name)) or text_problem(str(value))
        if problem:  # no id or name holds one, and PostgreSQL refuses NUL
            raise BadRequest(f"Invalid input: URL parameter {str(name)[:40]!r}: {problem}.")
    return replace(ctx, request_id=request_id(request))


def project_context(request: Request, project_id: str) -> RequestContext:
    """Context for `/…/{project_id}/…` URLs: the path must name the token's project (admins may
    act in any existing project)."""
    ctx = context(request)
    if project_id == ctx.project_id:
        return ctx
    if ctx.is_admin and _ferry(request).identity.project_exists(project_id):
        return replace(ctx, project_id=project_id)
    raise Forbidden(f"Token is scoped to project {ctx.project_id}, not {project_id}.")
