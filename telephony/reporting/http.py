"""HTTP adapter of the statistics page (统计): `GET /v1/stats?from=YYYY-MM-DD&to=YYYY-MM-DD[&tz=ZONE]` answers the
review's figures for this site's copies and queue calls as JSON, for the supervisor (the site token) only. The
dates are checked as `linkage report` checks them (calendar days in `tz`, from ≤ to, at most MAX_DAYS) before the
database is opened; the SQL runs in a thread."""

from __future__ import annotations

import asyncio

from aiohttp import web

from telephony.config import SiteConfig
from telephony.errors import Forbidden, InvalidInput, NotFound
from telephony.http_request import own_agent
from telephony.reporting.report import MAX_DAYS, period
from telephony.reporting.stats import Period, collect


class StatsHttp:
    def __init__(self, config: SiteConfig, url: str) -> None:
        """`url`: the reporting database, resolved (telephony/reporting/db.py resolve); "" when there is none."""
        self.config = config
        self.url = url

    async def stats(self, request: web.Request) -> web.Response:
        own = own_agent(request)
        if own is not None:
            raise Forbidden(f"the statistics are for the supervisor (the site token), not agent {own}", agent=own)
        query = request.query
        missing = [k for k in ("from", "to") if not query.get(k)]
        if missing:
            raise InvalidInput(f"{' and '.join(missing)}: required, a date YYYY-MM-DD", field=missing[0])
        tz = query.get("tz") or self.config.followup.timezone
        start, end = period(query["from"], query["to"], tz, flag="", max_days=MAX_DAYS)
        if not self.url:
            raise NotFound("this site keeps no reporting database (reporting.url is empty)")
        early = self.config.reporting.early_release_seconds
        count, shown = await asyncio.to_thread(collect, self.url,
                                               Period(start, end, tz, self.config.site.name, early))
        return web.json_response({"site": self.config.site.name, "from": query["from"], "to": query["to"], "tz": tz,
                                  "tickets": count, "early_release_seconds": early,
                                  "figures": [f.to_dict() for f in shown]})
