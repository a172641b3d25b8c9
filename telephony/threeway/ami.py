"""AMI adapter of the three-way context: who enters and leaves the conferences (ConfbridgeJoin/Leave), and how
an attended transfer's consultation ends (AttendedTransfer, or its Local channel's Hangup); the dialplan's
UserEvents of the keys: LinkageThreeway (the three-way key of a prepared call, no AGI) and LinkageHookDone (a
key's Gosub returning, after which the channels can be moved)."""

from __future__ import annotations

from telephony.threeway.services import ThreewayService


class ThreewayAmi:
    def __init__(self, threeway: ThreewayService) -> None:
        self.threeway = threeway

    async def on_event(self, event: dict[str, str]) -> None:
        name = event.get("Event", "")
        if name == "UserEvent":
            kind = event.get("UserEvent")
            if kind == "LinkageHookDone":
                self.threeway.hook_done(event.get("Uniqueid", ""))
            elif kind == "LinkageThreeway":
                await self.threeway.prepared_key(event.get("Linkedid", ""), event.get("Uniqueid", ""))
        elif name == "ConfbridgeJoin":
            self.threeway.joined(event.get("Conference", ""), event.get("Channel", ""), event.get("Uniqueid", ""))
        elif name == "ConfbridgeLeave":
            await self.threeway.left(event.get("Conference", ""), event.get("Channel", ""))
        elif name == "AttendedTransfer" and self.threeway.consulting:
            await self.threeway.consult_transferred(
                event.get("Result") == "Success",
                (event.get("OrigTransfererChannel", ""), event.get("SecondTransfererChannel", "")), event.values())
        elif name == "Hangup" and self.threeway.consulting:
            await self.threeway.consult_hung_up(event.get("Channel", ""), event.get("Uniqueid", ""), event.values())
