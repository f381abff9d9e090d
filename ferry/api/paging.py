"""Cinder's `<collection>_links` on list pages: a `next` link when the page is full.

A page is full when it holds as many items as asked for (`limit`, capped at the service's maximum)
or, with no limit, the maximum itself; the link repeats the request with `marker` set to the page's
last item (tempest follows it to the end).
"""

from __future__ import annotations

from typing import Any

from fastapi import Request

MAX_PAGE = 1000
"""`services.queries.MAX_LIMIT`: the longest page the services answer."""


def next_links(request: Request, items: list[dict[str, Any]], limit: int | None) -> list[dict[str, str]]:
    """The `next` link of a list page, if the page is full (else no links)."""
    full = min(limit, MAX_PAGE) if limit is not None else MAX_PAGE
    if not items or len(items) != full:
        return []
    url = request.url.include_query_params(marker=items[-1]["id"])
    return [{"rel": "next", "href": str(url)}]
