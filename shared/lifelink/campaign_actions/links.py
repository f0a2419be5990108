"""Links from a life-account message into a page of one of the campaign's mini programs.

The message gateway adds the attribution token inside the link's ``query`` when it sends (see
:mod:`lifelink.domain.attribution`), so opens trace back to the ledger entry.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

from lifelink.domain.campaigns import Campaign, Link


def mini_program_url(app_id: str, page: str) -> str:
    """``alipays://platformapi/startapp?appId=…&page=…[&query=…]`` for a page path (with an optional query)."""
    path, _, query = page.partition("?")
    params = [("appId", app_id), ("page", path.lstrip("/"))]
    if query:
        params.append(("query", query))
    return "alipays://platformapi/startapp?" + urlencode(params, quote_via=quote)


def link_url(campaign: Campaign, link: Link | None) -> str | None:
    if link is None:
        return None
    return mini_program_url(link.mini_program or campaign.mini_programs[0], link.page)
