"""One line of Asterisk's queue_log, parsed and checked, and what the lines do to `queue_calls` (one row per
call's stay in a queue). Pure parsing and SQL; the file is read by telephony/reporting/queue_log.py.

A line is `epoch|callid|queuename|agent|event|data1|…|data5` (Asterisk 22, apps/app_queue.c). The data each event
carries, as the figures use it:

    ENTERQUEUE       url | callerid | position [| callerid name]   (the callerid is a phone number: never logged,
                                                                     never in a view)
    CONNECT          holdtime | bridged channel's uniqueid | ringtime
    ABANDON, EXITEMPTY, EXITWITHTIMEOUT   position | origposition | waittime
    EXITWITHKEY      key | position | origposition | waittime
    WITHDRAW         position | origposition | waittime | withdraw info
    COMPLETECALLER, COMPLETEAGENT         holdtime | calltime | origposition
    TRANSFER, BLINDTRANSFER               exten | context | holdtime | calltime | origposition
    ATTENDEDTRANSFER BRIDGE|bridge, APP|app or LINK|chan|chan, then holdtime | calltime | origposition
    RINGNOANSWER, RINGCANCELED            ringtime (ms);   PAUSE reason;   the other member and system events
                                                            (ADDMEMBER, UNPAUSE, QUEUESTART, …) are kept raw only

A replayed line changes nothing: its raw row is keyed by a hash of its fields and inserted only if absent, and
each derived update applies only from the state it moves from (a CONNECT moves a waiting call)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import NamedTuple

from telephony.reporting.db import Transaction

MAX_LINE = 8192  # bytes; Asterisk's own lines are far shorter
EVENT = re.compile(r"^[A-Z][A-Z_]{0,31}$")
CALLID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
NAME_LENGTH, DATA_LENGTH = 128, 1024
CONTROL = re.compile(r"[\x00-\x1f\x7f]")

# what ends a call's wait, and the data field (1-based) that holds its waittime
ENDS = {"ABANDON": ("abandoned", 3), "EXITWITHTIMEOUT": ("timeout", 3), "EXITEMPTY": ("exitempty", 3),
        "EXITWITHKEY": ("exitkey", 4), "WITHDRAW": ("withdrawn", 3)}
TRANSFERS = ("TRANSFER", "BLINDTRANSFER", "ATTENDEDTRANSFER")
COMPLETES = ("COMPLETECALLER", "COMPLETEAGENT")
OUTCOMES = ("waiting", "answered", "transferred", *(outcome for outcome, _ in ENDS.values()))


class BadLine(ValueError):
    """A queue_log line that does not parse; the message says why, without the line's data."""


class Line(NamedTuple):
    at: int
    callid: str
    queue: str
    agent: str
    event: str
    data: tuple[str, str, str, str, str]

    def number(self, field: int, name: str) -> int:
        value = self.data[field - 1]
        if not value.isdigit() or len(value) > 12:
            raise BadLine(f"{self.event} {name} (data{field}) is not a whole number")
        return int(value)

    def key(self, site: str) -> str:
        text = "|".join((site, str(self.at), self.callid, self.queue, self.agent, self.event, *self.data))
        return hashlib.sha1(text.encode("utf-8")).hexdigest()[:32]


def parse(text: str) -> Line:
    fields = text.split("|")
    if len(fields) < 5:
        raise BadLine(f"{len(fields)} fields, at least 5 expected (epoch|callid|queue|agent|event)")
    stamp, callid, queue, agent, event, *data = fields
    if not stamp.isdigit() or not 9 <= len(stamp) <= 11:
        raise BadLine("the time is not epoch seconds")
    if not CALLID.match(callid):
        raise BadLine("the callid is not a uniqueid, NONE or REALTIME")
    if not EVENT.match(event):
        raise BadLine("the event is not an event name")
    for name, value in (("queue", queue), ("agent", agent)):
        if not value or len(value) > NAME_LENGTH or CONTROL.search(value):
            raise BadLine(f"the {name} is empty, too long or holds control characters")
    if len(data) > 5:  # ATTENDEDTRANSFER's LINK|chan|chan: the rest rides in data5
        data = [*data[:4], "|".join(data[4:])]
    if any(len(d) > DATA_LENGTH or CONTROL.search(d) for d in data):
        raise BadLine("a data field is too long or holds control characters")
    padded = (*data, "", "", "", "", "")[:5]
    line = Line(int(stamp), callid, queue, agent, event, padded)  # type: ignore[arg-type]
    _check_numbers(line)
    return line


def _check_numbers(line: Line) -> None:
    """The numbers the derived calls use must be numbers; a line whose are not is refused whole."""
    if line.event == "ENTERQUEUE":
        line.number(3, "position")
    elif line.event == "CONNECT":
        line.number(1, "holdtime")
    elif line.event in ENDS:
        line.number(ENDS[line.event][1], "waittime")


# -- writing ------------------------------------------------------------------------------------------------------

INSERT_RAW = ("INSERT INTO queue_log (site, hash, at_ts, callid, queue, agent, event, data1, data2, data3, data4, "
              "data5) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (site, hash) DO NOTHING")
ENTER = ("INSERT INTO queue_calls (site, queue, callid, entered_ts, entered_at, hour, entry_position, outcome, "
         "wait_s, agent, ended_ts) VALUES (%s, %s, %s, %s, %s, %s, %s, 'waiting', NULL, '', NULL) "
         "ON CONFLICT (site, callid, queue, entered_ts) DO NOTHING")
# The call an event belongs to: the same channel's latest entry into that queue at or before the event.
_THIS_CALL = ("site = %s AND callid = %s AND queue = %s AND entered_ts = (SELECT MAX(entered_ts) FROM queue_calls "
              "WHERE site = %s AND callid = %s AND queue = %s AND entered_ts <= %s)")
CONNECT = ("UPDATE queue_calls SET outcome = 'answered', wait_s = %s, agent = %s WHERE outcome = 'waiting' AND "
           + _THIS_CALL)
END = "UPDATE queue_calls SET outcome = %s, wait_s = %s, ended_ts = %s WHERE outcome = 'waiting' AND " + _THIS_CALL
TRANSFER = ("UPDATE queue_calls SET outcome = 'transferred', ended_ts = %s WHERE outcome = 'answered' AND "
            + _THIS_CALL)
COMPLETE = ("UPDATE queue_calls SET ended_ts = %s WHERE outcome IN ('answered', 'transferred') AND "
            "ended_ts IS NULL AND " + _THIS_CALL)


def write_lines(tx: Transaction, site: str, lines: Iterable[Line]) -> int:
    """The raw rows and their effect on the calls, in phases (entries, answers, ends, transfers, completions):
    within one call that is the order Asterisk writes them in, and a channel's second entry into a queue is told
    from its first by time, so phases keep each call's story straight."""
    lines = list(lines)
    tx.executemany(INSERT_RAW, [(site, ln.key(site), ln.at, ln.callid, ln.queue, ln.agent, ln.event, *ln.data)
                                for ln in lines])
    enters, connects, ends, transfers, completes = [], [], [], [], []
    for ln in lines:
        this = (site, ln.callid, ln.queue, site, ln.callid, ln.queue, ln.at)
        if ln.event == "ENTERQUEUE":
            enters.append((site, ln.queue, ln.callid, ln.at, iso(ln.at), ln.at - ln.at % 3600,
                           ln.number(3, "position")))
        elif ln.event == "CONNECT":
            connects.append((ln.number(1, "holdtime"), ln.agent, *this))
        elif ln.event in ENDS:
            outcome, field = ENDS[ln.event]
            ends.append((outcome, ln.number(field, "waittime"), ln.at, *this))
        elif ln.event in TRANSFERS:
            transfers.append((ln.at, *this))
        elif ln.event in COMPLETES:
            completes.append((ln.at, *this))
    for sql, rows in ((ENTER, enters), (CONNECT, connects), (END, ends), (TRANSFER, transfers),
                      (COMPLETE, completes)):
        if rows:
            tx.executemany(sql, rows)
    return len(lines)


def iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
