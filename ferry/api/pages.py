"""Cinder's pagination links: a list that a `limit` (or the largest page) cut carries
`<collection>_links` with a `next` link whose `marker` is the page's last item."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import Request

from ferry.api.versions import base_url
from ferry.services.queries import MAX_LIMIT


def next_links(
    request: Request, project_id: str, collection: str, items: list[dict[str, Any]]
) -> list[dict[str, str]]:
    """The `next` link of a page of `items` listed at `collection` (`volumes/detail`, …), or none:
    as Cinder, a page as long as the limit asked for (at most the largest page) may have a
    successor, so it links one (which may then be empty)."""
    asked = request.query_params.get("limit")
    limit = int(asked) if asked is not None and asked.isdigit() else MAX_LIMIT
    limit = min(limit, MAX_LIMIT)
    if not items or len(items) != limit:
        return []
    params = [(k, v) for k, v in request.query_params.multi_items() if k != "marker"]
    params.append(("marker", str(items[-1]["id"])))
    href = f"{base_url(request)}/volume/v3/{project_id}/{collection}?{urlencode(params)}"
    return [{"rel": "next", "href": href}]
