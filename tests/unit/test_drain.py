"""The lab drain reads Asterisk's own answers: the channel count, and the PJSIP transaction table, where a client
transaction still sending (a request as its last message, in state Calling, Trying or Proceeding) would go on
retransmitting into the next scenario's SIPp."""

from __future__ import annotations

from linkage_lab.harness.drain import Busy, Drained, channel_count, sending, transactions_listed

IDLE_COUNT = "0 active channels\n0 active calls\n42 calls processed\n"
BUSY_COUNT = "2 active channels\n1 active call\n43 calls processed\n"

DUMP = """\
Dumping transaction table:
 Total 3 transactions
 tsx0x7f3c1c01d2a8 Request msg INVITE/cseq=12113 (tdta0x7f3c1c0c1a28)|0|Calling
 tsx0x7f3c1c02e6f0 Request msg OPTIONS/cseq=5514 (tdta0x7f3c1c0d3f18)|200|Completed
 tsx0x7f3c1c03a418 Response msg 200/INVITE/cseq=1 (tdta0x7f3c1c0e2b68)|200|Terminated
"""


def test_channel_count_reads_the_first_line_and_none_when_the_pbx_did_not_answer() -> None:
    assert channel_count(IDLE_COUNT) == 0
    assert channel_count(BUSY_COUNT) == 2
    assert channel_count("Unable to connect to remote asterisk (does /run/asterisk.ctl exist?)\n") is None
    assert channel_count("") is None


def test_only_client_transactions_not_yet_answered_count_as_sending() -> None:
    assert transactions_listed(DUMP)
    assert sending(DUMP) == ("INVITE cseq 12113 Calling",)
    trying = DUMP.replace("|0|Calling", "|0|Trying").replace("INVITE/cseq=12113", "BYE/cseq=12114")
    assert sending(trying) == ("BYE cseq 12114 Trying",)
    assert sending(DUMP.replace("|0|Calling", "|408|Terminated")) == ()
    assert not transactions_listed("No such command 'pjsip dump endpt details'\n")


def test_the_timeline_note_says_what_was_waited_for() -> None:
    assert Drained(0.1, [], []).note("before the scenario") is None
    seen = [Busy("110", 0, ("INVITE cseq 12113 Calling",))]
    assert Drained(2.6, seen, []).note("after the scenario") == \
        "lab after the scenario: 110: 0 channel(s), INVITE cseq 12113 Calling; drained in 2.6s"
    assert Drained(10.2, seen, seen).note("before the scenario") == \
        "lab before the scenario: 110: 0 channel(s), INVITE cseq 12113 Calling; still busy after 10.2s: " \
        "110: 0 channel(s), INVITE cseq 12113 Calling"
