"""The FastAPI application: routers, error handlers, microversion middleware, life cycle."""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from ferry import __version__
from ferry import config as cfgmod
from ferry.api import (
    app_credentials,
    attachments,
    availability,
    capabilities,
    catalog,
    compute,
    compute_images,
    compute_quotas,
    compute_volumes,
    consoles,
    errors,
    extensions,
    flavors,
    glance,
    hosts,
    identity,
    images,
    instance_actions,
    keypairs,
    list_filters,
    messages,
    metadata,
    openapi,
    pools,
    projects,
    qos_specs,
    quotas,
    roles,
    server_details,
    server_migrations,
    snapshots,
    type_access,
    users,
    versions,
    volume_actions,
    volume_hosts,
    volume_types,
    volumes,
)
from ferry.api.edge import Edge
from ferry.api.responses import JSONBody
from ferry.services.app import Ferry
from ferry.services.tier import ProcessRole


def tier_app() -> FastAPI:
    """One worker of the API tier: `ferry serve --role api --workers N` has uvicorn import and
    call this in each worker process, after the schema is up to date (`prepare`)."""
    level = os.environ.get("FERRY_LOG_LEVEL", "info").upper()  # a spawned worker starts unconfigured
    logging.basicConfig(level=level, format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
    config = cfgmod.load(Path(os.environ["FERRY_CONFIG"]))
    return create_app(Ferry(config, role=ProcessRole.API))


def create_app(ferry: Ferry) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await ferry.start()
        # Everything loaded so far lives as long as the process: keep it out of the collector's
        # full passes, which otherwise walk ~120k objects and stall a request by ~100 ms.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await ferry.stop()
            gc.unfreeze()  # an embedding process (tests) may start many apps in turn

    app = FastAPI(
        title="Ferry",
        version=__version__,
        lifespan=lifespan,
        description="Live volume migration for QEMU/KVM clouds, OpenStack-compatible.",
        default_response_class=JSONBody,
        # As Nova and Cinder: `GET …/os-volumes/` names no resource (404), rather than a redirect
        # to the list that a client behind a TLS proxy would follow to the wrong scheme.
        redirect_slashes=False,
    )
    app.state.ferry = ferry
    errors.install(app)
    app.add_middleware(versions.Microversions)
    app.add_middleware(
        Edge, max_body_bytes=ferry.config.max_body_bytes, max_data_bytes=ferry.config.max_image_bytes
    )  # outermost: sees every answer
    app.include_router(versions.router)
    app.include_router(identity.router)
    app.include_router(projects.router)
    app.include_router(users.router)
    app.include_router(roles.router)
    app.include_router(app_credentials.router)
    app.include_router(catalog.router)
    app.include_router(extensions.router)
    app.include_router(extensions.compute_router)
    resources = (
        availability,  # before volumes: its volumes/summary is not a volume id
        metadata,
        volumes,
        snapshots,
        volume_actions,
        volume_types,
        type_access,
        qos_specs,
        pools,
        capabilities,
        messages,
        attachments,
        compute,
        consoles,
        flavors,
        compute_images,
        compute_volumes,
        images,
        glance,
        hosts,
        volume_hosts,
        server_migrations,
        quotas,
        compute_quotas,
        keypairs,
        server_details,
        list_filters,
        instance_actions,
    )
    for resource in resources:
        app.include_router(resource.router)
    openapi.install(app)
    return app
