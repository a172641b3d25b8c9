"""Numbers that call the hotline N times within M minutes (harassment.repeat_calls / repeat_minutes): counted
from the PBX's own events, suggested to the supervisor — a suggestion, never a block: nothing here reaches the
PBX or the flags.

Memory is bounded whatever the traffic: at most `max_numbers` numbers are tracked (the one that called least
recently is forgotten first), each with at most N call times, and at most `max_suggestions` suggestions, each
dropped `keep` seconds after that number's last call.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

MAX_NUMBERS = 10_000
MAX_SUGGESTIONS = 200
KEEP = 24 * 3600.0  # seconds a suggestion stays after the number's last call


@dataclass
class Tally:
    times: deque[float]  # the latest call times, at most N
    total: int = 0  # calls since the controller started (while tracked)
    last: float = 0.0


@dataclass(frozen=True)
class Suggestion:
    number: str
    calls: int  # calls within the window when it was last suggested
    first: float  # the first and last of those calls (epoch seconds)
    last: float

    def to_dict(self) -> dict[str, object]:
        return {"number": self.number, "calls": self.calls, "first": self.first, "last": self.last}


@dataclass
class RepeatCounter:
    calls: int  # N
    window: float  # M minutes, in seconds
    max_numbers: int = MAX_NUMBERS
    max_suggestions: int = MAX_SUGGESTIONS
    keep: float = KEEP
    clock: Callable[[], float] = time.time
    tallies: OrderedDict[str, Tally] = field(default_factory=OrderedDict)
    suggested: OrderedDict[str, Suggestion] = field(default_factory=OrderedDict)

    def called(self, number: str) -> tuple[int, Suggestion | None]:
        """One call from `number`: its calls within the window now, and the suggestion if it reached N."""
        now = self.clock()
        tally = self.tallies.get(number)
        if tally is None:
            tally = self.tallies[number] = Tally(deque(maxlen=self.calls))
            while len(self.tallies) > self.max_numbers:
                self.tallies.popitem(last=False)
        self.tallies.move_to_end(number)
        tally.times.append(now)
        tally.total += 1
        tally.last = now
        recent = self._recent(tally, now)
        if recent < self.calls:
            return recent, None
        suggestion = Suggestion(number, recent, tally.times[0], now)
        self.suggested.pop(number, None)
        self.suggested[number] = suggestion
        while len(self.suggested) > self.max_suggestions:
            self.suggested.popitem(last=False)
        return recent, suggestion

    def suggestions(self) -> list[Suggestion]:
        """Newest first; those whose number has been quiet for `keep` are dropped."""
        horizon = self.clock() - self.keep
        for number in [n for n, s in self.suggested.items() if s.last < horizon]:
            del self.suggested[number]
        return list(reversed(self.suggested.values()))

    def dismiss(self, number: str) -> None:
        self.suggested.pop(number, None)

    def counts(self, limit: int) -> list[dict[str, object]]:
        """The numbers calling most within the window (then most in all), at most `limit`."""
        now = self.clock()
        rows = sorted(((self._recent(t, now), t.total, t.last, n) for n, t in self.tallies.items()),
                      key=lambda r: (-r[0], -r[1], -r[2]))
        return [{"number": n, "recent": recent, "total": total, "last": last}
                for recent, total, last, n in rows[:limit]]

    def _recent(self, tally: Tally, now: float) -> int:
        return sum(1 for t in tally.times if t >= now - self.window)
