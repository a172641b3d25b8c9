"""Console actions of a scenario over the controllers' HTTP API: the draft, the transfer, three-way and consult
buttons while the call is bridged, and lifecycle transitions or amendments of the ticket once the calls are over."""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

from linkage_lab.harness.checks import iso
from linkage_lab.harness.http import SiteHttp
from linkage_lab.harness.report import Result
from linkage_lab.harness.scenario import Action


async def act_after(http: SiteHttp, action: Action, desc: dict[str, Any], result: Result, begin: float,
                    settle: float) -> None:
    """A lifecycle transition or amendment of the scenario's ticket on a site, once the calls are over.
    Feedback is asynchronous, so a 409 (not yet in the right state here) or a missing ticket is retried
    until the settle time runs out."""
    site = desc["sites"][action.site]
    deadline = time.time() + settle
    status, reply, what = 0, cast(Any, {}), ""
    while True:
        listing = await http.get(f"{site['http']}/v1/tickets?since={begin - 1:.3f}", site["token"])
        items = [t for t in listing["items"] if t["created_at"] >= iso(begin - 1)]
        if len(items) == 1:
            tid = items[0]["id"]
            if action.transition is not None:
                what = f"transition {action.transition.get('type')}"
                status, reply = await http.call(f"{site['http']}/v1/tickets/{tid}/transitions", site["token"],
                                                "POST", action.transition)
            else:
                what = "amend"
                status, reply = await http.call(f"{site['http']}/v1/tickets/{tid}", site["token"], "PATCH",
                                                action.amend)
            wanted = action.expect or 200
            if status == wanted or (status not in (404, 409) and action.expect is None) or time.time() > deadline:
                break
        elif time.time() > deadline:
            result.failures.append(f"action on {action.site}: expected one ticket there, found {len(items)}")
            return
        await asyncio.sleep(0.2)
    result.timeline.append((time.time(), action.site, f"console: {what} -> HTTP {status}"))
    if status != (action.expect or 200):
        result.failures.append(f"action on {action.site}: {what} got HTTP {status} "
                               f"{reply.get('message', '') if isinstance(reply, dict) else ''}, "
                               f"expected {action.expect or 200}")


async def act(http: SiteHttp, action: Action, desc: dict[str, Any], result: Result) -> None:
    """Type the draft into the console of the site's bridged call, as an agent would before the key press."""
    await asyncio.sleep(action.at or 0.0)
    site = desc["sites"][action.site]
    try:
        deadline = time.time() + 3.0  # a loaded machine may answer a little later than the scenario says
        while True:
            calls = await http.get(f"{site['http']}/v1/calls", site["token"])
            bridged = [c for c in calls["items"] if c["bridged"]]
            if len(bridged) == 1 or time.time() > deadline:
                break
            await asyncio.sleep(0.1)
        if len(bridged) != 1:
            result.failures.append(f"action at {action.at}s: expected one bridged call on {action.site}, "
                                   f"found {len(bridged)}")
            return
        buttons = (("transfer", action.transfer), ("threeway", action.threeway), ("consult", action.consult),
                   ("return", action.give_back))
        button = next(((verb, body) for verb, body in buttons if body is not None), None)
        if button is not None:
            verb, body = button
            url = f"{site['http']}/v1/calls/{bridged[0]['linkedid']}/{verb}"
            status, reply = await http.call(url, site["token"], "POST", body)
            result.timeline.append((time.time(), action.site, f"console: {verb} button -> HTTP {status}"))
            if status != (action.expect or 200) and not (action.expect is None and status == 202):
                result.failures.append(f"console {verb} on {action.site} got HTTP {status}: {reply}")
            return
        url = f"{site['http']}/v1/calls/{bridged[0]['linkedid']}/draft"
        await http.get(url, site["token"], "PUT", action.draft)
        result.timeline.append((time.time(), action.site, f"console: draft {sorted(action.draft)}"))
    except (OSError, ValueError) as exc:
        result.failures.append(f"action at {action.at}s on {action.site} failed: {exc}")
