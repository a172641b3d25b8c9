"""AMI adapter of the three-way context: who enters and leaves the conferences (ConfbridgeJoin/Leave), and how
an attended transfer's consultation ends (AttendedTransfer, or its Local channel's Hangup)."""

from __future__ import annotations

from telephony.threeway.services import ThreewayService


class ThreewayAmi:
    def __init__(self, threeway: ThreewayService) -> None:
        self.threeway = threeway

    async def on_event(self, event: dict[str, str]) -> None:
        name = event.get("Event", "")
        if name == "ConfbridgeJoin":
            self.threeway.joined(event.get("Conference", ""), event.get("Channel", ""), event.get("Uniqueid", ""))
        elif name == "ConfbridgeLeave":
            await self.threeway.left(event.get("Conference", ""), event.get("Channel", ""))
        elif name == "AttendedTransfer" and self.threeway.consulting:
            await self.threeway.consult_transferred(
                event.get("Result") == "Success",
                (event.get("OrigTransfererChannel", ""), event.get("SecondTransfererChannel", "")), event.values())
        elif name == "Hangup" and self.threeway.consulting:
            await self.threeway.consult_hung_up(event.get("Channel", ""), event.get("Uniqueid", ""), event.values())
