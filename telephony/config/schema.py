"""The site configuration's types, shaped exactly like the YAML file: one Struct per section, the keys as in the
file, defaults and bounds in the declaration (docs: README "How an engineer deploys").

What a type cannot say (an IP address, a name that must be a configured peer, unique agents) is checked in
load.py after conversion; TLS files are read by build_tls at start, not here.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from telephony import ids


def _p(pattern: object) -> Meta:
    return Meta(pattern=pattern.pattern)  # type: ignore[attr-defined]


Port = Annotated[int, Meta(ge=1, le=65535)]
SiteName = Annotated[str, _p(ids.SITE_NAME)]
OptionalSiteName = Annotated[str, _p(ids.OPTIONAL_SITE_NAME)]
Division = Annotated[str, _p(ids.DIVISION)]
OptionalDivision = Annotated[str, _p(ids.OPTIONAL_DIVISION)]
Dial = Annotated[str, _p(ids.DIAL)]
FeatureKey = Annotated[str, _p(ids.FEATURE_KEY)]
OptionalFeatureKey = Annotated[str, _p(ids.OPTIONAL_FEATURE_KEY)]
Url = Annotated[str, _p(ids.URL)]
Level = Annotated[str, Meta(pattern=r"^(city|county)$")]
WebhookSecret = Annotated[str, _p(ids.WEBHOOK_SECRET)]
StorageKey = Annotated[str, _p(ids.STORAGE_KEY)]
Weekday = Annotated[int, Meta(ge=0, le=6)]  # Monday = 0


def _seconds(lo: float, hi: float) -> Meta:
    return Meta(ge=lo, le=hi)


class Section(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A mapping of the file: unknown keys are refused, so a misspelt key is an error, not a silent default."""


class HostPort(Section, frozen=True):
    host: str  # an IP address (checked after conversion)
    port: Port


class Site(Section, frozen=True, kw_only=True):
    name: SiteName
    platform: SiteName
    level: Level = "city"
    division: Division
    parent: OptionalSiteName = ""  # a county's city site


class AmiConfig(Section, frozen=True):
    host: str
    port: Port
    username: Annotated[str, _p(ids.AMI_USERNAME)]
    secret: Annotated[str, _p(ids.AMI_SECRET)]
    ping_interval: Annotated[float, _seconds(0.5, 60)] = 5.0
    reconnect_min: Annotated[float, _seconds(0.05, 60)] = 0.5  # seconds before the first reconnect; doubles …
    # … up to this, and starts over after a login (AMI is local and cheap to reach, while every second without
    # it costs key presses a resync)
    reconnect_max: Annotated[float, _seconds(0.05, 3600)] = 5.0


class Pbx(Section, frozen=True):
    sip: HostPort
    ami: AmiConfig
    agi: HostPort


class ListenerTls(Section, frozen=True):
    """TLS on the peer/console listener; with client_ca, mutual TLS. Paths relative to the config file."""

    cert: str = ""
    key: str = ""
    client_ca: str = ""


class Http(Section, frozen=True):
    host: str
    port: Port
    tls: ListenerTls | None = None


class Controller(Section, frozen=True):
    http: Http
    public_url: Url  # where peers reach ticket references (trailing slash dropped)
    api_token: Annotated[str, _p(ids.TOKEN)]
    rate_per_second: Annotated[float, Meta(ge=0.1, le=100000)] = 200.0  # API requests per caller …
    rate_burst: Annotated[float, Meta(ge=1, le=100000)] = 400.0  # … with this burst


class Redis(Section, frozen=True):
    url: Annotated[str, _p(ids.REDIS_URL)]


class Keys(Section, frozen=True):
    onekey: FeatureKey = "*8"  # the short form's one-key code (without a targets list)
    threeway: FeatureKey = "*9"
    consult: FeatureKey = "*7"  # attended (consultative) transfer to the three-way target


class Citizen(Section, frozen=True):
    host: str
    port: Port
    dial: Dial  # the number citizens dial at this site


class Agent(Section, frozen=True):
    id: Annotated[str, _p(ids.AGENT_ID)]
    host: str
    port: Port
    token: Annotated[str, _p(ids.OPTIONAL_TOKEN)] = ""  # this agent's console token: it acts for this agent only


class Accounts(Section, frozen=True):
    citizen: Citizen
    agents: Annotated[tuple[Agent, ...], Meta(min_length=1)]


class PeerTls(Section, frozen=True):
    """TLS to one peer, as its client: ca signs the peer's server certificate ("" = the system store); cert and
    key are ours, for a peer that asks for one (mutual TLS). Paths relative to the config file."""

    ca: str = ""
    cert: str = ""
    key: str = ""


class Peer(Section, frozen=True):
    """Another site this one transfers calls to (over the SIP trunk) and pushes tickets to (over HTTP)."""

    name: SiteName
    platform: SiteName
    url: Url  # trailing slash dropped
    trunk: HostPort
    dial: Dial  # the number sent over the trunk
    level: Level = "city"
    division: OptionalDivision = ""  # a county peer owns the tickets of its division code (市级互转, push-down)
    # shared signing secrets, newest first; both sites hold the same list (1 to 4: checked after conversion)
    secrets: Annotated[tuple[WebhookSecret, ...], Meta(max_length=4)] = ()
    tls: PeerTls | None = None  # set exactly when url is https:// (an https peer without it gets the defaults)


class Target(Section, frozen=True):
    """Where a feature key sends the caller: a peer site with a controller (ticket pushed), or a phone-only
    desk such as 120 or a utility hotline (the call goes with the caller's number; the ticket stays here)."""

    name: SiteName
    platform: SiteName
    key: FeatureKey
    dial: Dial
    peer: str | None = None  # name of the peer site that receives the ticket
    via: str | None = None  # a peer that relays to this target (a county 110 reaches 12345 through the city)
    phone: HostPort | None = None  # SIP address of a phone-only target


class Transfer(Section, frozen=True):
    ring_timeout: Annotated[int, Meta(ge=1, le=600)] = 30
    fetch_timeout: Annotated[float, _seconds(0.05, 10)] = 0.5
    # A linked call that outruns its ticket's push waits this long for it before fetching it by reference: the
    # push is normally there in a few ms, and a fetch adds a request to both controllers when they are busiest.
    push_wait: Annotated[float, _seconds(0, 2)] = 0.5
    # The most route_in spends finding a linked call's ticket (the push wait, the Call-Info fetch, the reads and
    # writes under them) before it rings an agent without it: under overload the call must go on while its caller
    # still waits. What happens to the call is then kept against the X-Linkage-Id until the ticket lands.
    route_budget: Annotated[float, _seconds(0.05, 10)] = 1.0
    overflow: OptionalSiteName = ""  # a peer (county seats) that takes an emergency our agents could not answer
    # No ping-pong: pressing toward the platform that already returned this matter starts the three-way call
    # with it (the plan's rule for unclear responsibility) instead of transferring the caller there again.
    return_threeway: bool = True


class Delivery(Section, frozen=True):
    push_delay: Annotated[float, _seconds(0, 3600)] = 0.0  # before a new ticket's first push: lab and drills only
    delivered_linger: Annotated[float, _seconds(0, 1)] = 0.02  # a `delivered` event waits for the `offered`


class Deadlines(Section, frozen=True):
    """Supervision (跟踪督办): how long a ticket may stay in a state before it is flagged overdue."""

    signed_for: Annotated[float, _seconds(1, 86400)] = 60.0  # from the offer (phone ringing) to signed for
    accepted: Annotated[float, _seconds(1, 30 * 86400)] = 1800.0  # from signed for to accepted / returned
    resolved_days: Annotated[float, Meta(ge=0.001, le=365)] = 5.0  # working days from accepted to resolved
    working_days: Annotated[tuple[Weekday, ...], Meta(min_length=1)] = (0, 1, 2, 3, 4)  # sorted, no repeats


HOURS = r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?-(([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?|24:00)$"


class Followup(Section, frozen=True):
    """Follow-up calls (智能回访): once a ticket this site sent is resolved, the site calls the citizen back on
    the ticket's number through `gateway` (an outbound SIP route, rendered as the endpoint `followup-out`), plays
    the prompt and reads a satisfaction key 1–5; no answer or busy is tried again `retry_seconds` later, up to
    `attempts`, only within `hours` (local time in `timezone`); then a manual follow-up task is left for the
    console. Off without a gateway."""

    gateway: HostPort | None = None
    delay: Annotated[float, _seconds(0, 7 * 86400)] = 600.0  # after `resolved`, before the first attempt
    attempts: Annotated[int, Meta(ge=1, le=10)] = 3
    retry_seconds: Annotated[float, _seconds(1, 7 * 86400)] = 1800.0
    ring_seconds: Annotated[int, Meta(ge=5, le=120)] = 30
    hours: Annotated[str, Meta(pattern=HOURS)] = "08:00-20:00"  # calling hours; "00:00-24:00" = always
    timezone: Annotated[str, Meta(pattern=r"^[A-Za-z_]+(/[A-Za-z0-9_+-]+){0,2}$")] = "Asia/Shanghai"
    caller_id: Annotated[str, _p(ids.OPTIONAL_DIAL)] = ""  # the number the citizen sees; default the hotline


class Threeway(Section, frozen=True):
    """The three-way call (三方通话): the platform dialled in, the negotiation keys inside the conference, and
    how long the platforms may take to decide before the plan's rules decide for them (the agent's key is
    keys.threeway, the attended transfer's keys.consult)."""

    target: OptionalSiteName = ""  # a transfer target's name; "" = the first target
    accept_key: FeatureKey = "*1"  # "my platform takes it": the other agent is released
    leave_key: FeatureKey = "*0"  # "I leave"
    decide_seconds: Annotated[float, _seconds(1, 3600)] = 120.0
    consult_abort: FeatureKey = "*1"  # features.conf atxferabort: cancel, the caller comes back
    consult_complete: FeatureKey = "*2"  # features.conf atxfercomplete (hanging up completes it too)
    emergency_categories: tuple[str, ...] = ("report",)  # danger to life or property: emergency_platform keeps it
    emergency_platform: SiteName = "110"  # the platform whose role is emergencies (公安110): it keeps such a caller


class Harassment(Section, frozen=True):
    """Malicious harassment (恶意骚扰) of the line: what a flagged caller meets, and when a number that keeps
    calling is suggested to the supervisor. Whatever the policy, a flagged caller still reaches an agent."""

    policy: Annotated[str, Meta(pattern=r"^(warn|designated)$")] = "warn"  # warn: the prompt, then every agent
    designated: tuple[Annotated[str, _p(ids.AGENT_ID)], ...] = ()  # policy designated: these ring first
    prompt: Annotated[str, _p(ids.SOUND)] = "custom/linkage/harassment-warning"  # Playback's name for it
    repeat_calls: Annotated[int, Meta(ge=2, le=1000)] = 5  # N calls …
    repeat_minutes: Annotated[float, Meta(ge=0.1, le=1440)] = 10.0  # … within M minutes: suggested


PAUSE_REASONS = ("break", "meal", "training", "meeting", "admin")  # 小休 就餐 培训 会议 事务: the pause key's digit - 1


class Surge(Section, frozen=True):
    """Surge support (突发事件县级座席支援): while this site's queue has `waiting_on` callers waiting or its
    oldest has waited `oldest_on` seconds, new hotline calls go over the trunk to the county seats (`to`, peers
    taken in turn), each with a ticket of mode surge; it stops once at most `waiting_off` wait and the oldest
    has waited at most `oldest_off` seconds (hysteresis: the two bounds keep it from flapping). Off without `to`."""

    to: tuple[SiteName, ...] = ()
    waiting_on: Annotated[int, Meta(ge=1, le=10000)] = 5
    oldest_on: Annotated[float, _seconds(1, 3600)] = 60.0
    waiting_off: Annotated[int, Meta(ge=0, le=10000)] = 1
    oldest_off: Annotated[float, _seconds(0, 3600)] = 20.0


class Queue(Section, frozen=True):
    """The site's ACD queue (app_queue, docs/queues.md): every hotline call waits in it for an agent; a linked
    call rings a free agent at once, and with none free it waits ahead of every fresh call (`linked_priority`).
    Agents are dynamic members: they log in, log out and pause (with a reason) from the console or by dialling
    the codes; `ringinuse` no means an agent in a call is not rung (the lab's SIPp phones take many calls and
    set it)."""

    strategy: Annotated[str, Meta(pattern=r"^(ringall|leastrecent|fewestcalls|random|rrmemory|rrordered|linear"
                                          r"|wrandom)$")] = "ringall"
    ringinuse: bool = False
    max_wait: Annotated[int, Meta(ge=10, le=7200)] = 600  # a hotline caller's longest wait: then the call ends
    linked_priority: Annotated[int, Meta(ge=1, le=100)] = 10
    login_code: FeatureKey = "*60"
    logout_code: FeatureKey = "*61"
    pause_code: FeatureKey = "*62"  # + a digit 1-5 for the reason (PAUSE_REASONS); alone: the first reason
    unpause_code: FeatureKey = "*63"
    surge: Surge = Surge()


class Bench(Section, frozen=True):
    baseline_key: OptionalFeatureKey = ""  # lab/bench only: a pure-dialplan blind transfer to the first target
    # lab/bench only: the same plus one bare FastAGI round trip on each PBX: the floor under any FastAGI transfer
    agi_floor_key: OptionalFeatureKey = ""


class Advice(Section, frozen=True):
    """Scope advice (智能转办): a city's own scope catalogue, longer than the plan's annex (docs/advice.md); ""
    reads the annex alone. A relative path is read from the site file's folder."""

    catalogue: str = ""


class Storage(Section, frozen=True):
    keys: Annotated[tuple[StorageKey, ...], Meta(max_length=4)] = ()  # tickets at rest, newest first


class Security(Section, frozen=True):
    # How long a processed peer message id is remembered: longer than the sender's retry window (days), so a
    # late retry is still a replay; at least the signature tolerance, at most a quarter year of ids.
    replay_window: Annotated[float, _seconds(600, 90 * 86400)] = 8 * 86400.0


class Reporting(Section, frozen=True):
    """The reporting database (docs/reporting.md): `sqlite:///PATH` (a relative PATH is read from the site file's
    folder), `postgresql://user@host:port/db`, or "" for none."""

    url: Annotated[str, Meta(pattern=r"^(|sqlite:///[^\s?#]+|postgres(ql)?://\S+)$")] = "sqlite:///reporting.sqlite3"
    # Asterisk's queue_log FILE, tailed into the database (telephony/reporting/queue_log.py); "" = off. A relative
    # path is read from the site file's folder.
    queue_log: Annotated[str, Meta(pattern=r"^[^\x00-\x1f\x7f]{0,4096}\Z")] = ""  # \Z: not even a final newline
    # 排队早释: a caller who hangs up within this many seconds in the queue counts as an early release
    early_release_seconds: Annotated[int, Meta(ge=1, le=600)] = 10


class SiteConfig(Section, frozen=True, kw_only=True):
    """One site's file. `targets` is the list as written, or (the short form, without one) the first peer on
    keys.onekey; `source_file` is where it was read from (not a key of the file)."""

    site: Site
    pbx: Pbx
    controller: Controller
    redis: Redis
    accounts: Accounts
    keys: Keys = Keys()
    peers: tuple[Peer, ...] = ()
    targets: tuple[Target, ...] = ()
    transfer: Transfer = Transfer()
    delivery: Delivery = Delivery()
    supervision: Deadlines = Deadlines()
    threeway: Threeway = Threeway()
    followup: Followup = Followup()
    harassment: Harassment = Harassment()
    queue: Queue = Queue()
    bench: Bench = Bench()
    advice: Advice = Advice()
    storage: Storage = Storage()
    security: Security = Security()
    reporting: Reporting = Reporting()
    source_file: str = ""

    @property
    def onekey(self) -> str:
        """The one-key transfer's code: the first target's key."""
        return self.targets[0].key if self.targets else self.keys.onekey

    def peer(self, name: str) -> Peer | None:
        return next((p for p in self.peers if p.name == name), None)

    def target(self, name: str) -> Target | None:
        return next((t for t in self.targets if t.name == name), None)
