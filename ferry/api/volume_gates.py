"""Volume request behaviours that arrive with a microversion and own no route: 3.15's metadata
Etag, 3.16's `cluster` in `os-migrate_volume`, 3.47's volume from a backup. The routes in
`volumes.py` call these when `at_least` says the request's version has them."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ferry.domain.errors import BadRequest, NotFound


def metadata_etag(body: dict[str, Any]) -> str:
    """Cinder's metadata Etag (3.15): the MD5 of the JSON body (a version tag, not a secret). A
    replacing PUT of the metadata compares its If-Match with it (412 when they differ)."""
    return hashlib.md5(json.dumps(body).encode(), usedforsecurity=False).hexdigest()


def refuse_cluster(args: Any) -> None:
    """3.16: `os-migrate_volume` takes `host` or `cluster`; Ferry has no clusters to move to."""
    if isinstance(args, dict) and "cluster" in args:
        if "host" in args:
            raise BadRequest("Invalid input: os-migrate_volume takes host or cluster, not both.")
        raise BadRequest(
            f"Invalid host: cluster {str(args['cluster'])[:255]!r} could not be found (Ferry has none)."
        )


def refuse_backup_source(body: dict[str, Any]) -> None:
    """3.47: a volume can be created from a backup (`backup_id`); Ferry has none to find."""
    part = body.get("volume")
    backup = part.get("backup_id") if isinstance(part, dict) else None
    if backup is not None:
        raise NotFound(f"Backup {str(backup)[:255]} could not be found.")
