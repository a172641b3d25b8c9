"""The vocabulary of identifiers: every id, name and code the service accepts, compiled once.

Each identifier is one pattern here, used three ways: the compiled `re.Pattern` (for a check in code), its
`optional()` form (the same id or empty, as a ticket field that is not known yet), and a msgspec-annotated type
(`TicketId`, …) that schemas declare fields with. Patterns keep Python's `$`, so validation accepts exactly what
the hand-written checks accepted.
"""

from __future__ import annotations

import re
from typing import Annotated

from msgspec import Meta


def optional(pattern: re.Pattern[str]) -> re.Pattern[str]:
    """The same identifier, or the empty string."""
    return re.compile(rf"^({pattern.pattern[1:-1]})?$")


# ---- tickets and events --------------------------------------------------------------------------------------
TICKET_ID = re.compile(r"^[0-9]{20,32}$")  # digits only: a ticket id rides in a dialplan extension
EVENT_ID = re.compile(r"^[0-9a-f]{32}$")  # uuid4().hex
DIRECTION = re.compile(r"^[0-9A-Za-z_-]{1,32}->[0-9A-Za-z_-]{1,32}$")  # "12345->110"
CATEGORY = re.compile(r"^[a-z_]{0,32}$")  # a ticket's category, empty until the agent picks one
PAYLOAD_KEY = re.compile(r"^[a-z_]{1,32}$")
MODE = re.compile(r"^(transfer|threeway|attended|referral|surge)?$")  # referral: no call; surge: no agent
# How a matter reached the sending platform: a call, or one of the network channels of a referral
INTAKE_CHANNELS = ("call", "web", "app", "mini_program", "email", "letter", "wechat", "other")
INTAKE_CHANNEL = re.compile(rf"^({'|'.join(INTAKE_CHANNELS)})$")
URGENCIES = ("normal", "urgent", "emergency")
URGENCY = re.compile(rf"^({'|'.join(URGENCIES)})?$")  # empty: not stated
RECORDING = re.compile(r"^[A-Za-z0-9._-]{0,100}$")  # a recording's file name
DECISION_VALUE = re.compile(r"^[0-9A-Za-z_/ -]{0,64}$")  # a three-way decision's keeper, rule or agent
# Text typed by a person: any character but the controls other than newline and tab.
TEXT = re.compile(r"^[^\x00-\x08\x0b-\x1f]*$")

# ---- sites, people and places ----------------------------------------------------------------------------------
SITE_NAME = re.compile(r"^[0-9A-Za-z][0-9A-Za-z_-]{0,31}$")  # a site, a platform, a peer or a target
DIVISION = re.compile(r"^[0-9]{6}$")  # GB/T 2260 administrative division code
AGENT_ID = re.compile(r"^[0-9]{2,10}$")  # an agent's extension, as configured
OPTIONAL_AGENT_ID = optional(AGENT_ID)
OPTIONAL_DIVISION = optional(DIVISION)
OPTIONAL_SITE_NAME = optional(SITE_NAME)

# ---- calls (Asterisk) ------------------------------------------------------------------------------------------
UNIQUEID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")  # an Asterisk uniqueid or linkedid
CHANNEL = re.compile(r"^[A-Za-z0-9/@._;-]{1,128}$")
CALLER_NUMBER = re.compile(r"^\+?[0-9]{1,20}$")
# a sound file as Playback names it: relative to Asterisk's sounds dir, no extension, no way out of it
SOUND = re.compile(r"^[a-z0-9][a-z0-9_-]{0,40}(/[a-z0-9][a-z0-9_-]{0,40}){0,3}$")
DIAL = re.compile(r"^[0-9]{2,15}$")  # a number dialled to reach a peer, a target or the hotline
OPTIONAL_DIAL = optional(DIAL)
FEATURE_KEY = re.compile(r"^[*#0-9]{1,4}$")  # a DTMF feature code such as *8
OPTIONAL_FEATURE_KEY = optional(FEATURE_KEY)

# ---- messages between sites ------------------------------------------------------------------------------------
SIGNED_MESSAGE_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")  # what a signed request names itself
BATCH_MESSAGE_ID = re.compile(r"^(ticket-[0-9]{20,32}-[0-9]{1,12}|event-[0-9a-f]{32})$")  # implied by its body

# ---- configuration ---------------------------------------------------------------------------------------------
TOKEN = re.compile(r"^[A-Za-z0-9._~+/=-]{16,200}$")  # an API bearer token
OPTIONAL_TOKEN = optional(TOKEN)
AMI_SECRET = re.compile(r"^[A-Za-z0-9]{8,64}$")
AMI_USERNAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,31}$")
URL = re.compile(r"^https?://[A-Za-z0-9.:\[\]-]+(:[0-9]+)?(/[A-Za-z0-9._~/-]*)?$")
WEBHOOK_SECRET = re.compile(r"^whsec_[A-Za-z0-9+/=]{20,200}$")  # a signing secret shared by two sites
STORAGE_KEY = re.compile(r"^[A-Za-z0-9+/]{43}=$")  # base64 of 32 bytes (AES-256-GCM, tickets at rest)
REDIS_URL = re.compile(r"^redis://[A-Za-z0-9.:@/_-]+$")
NUMBER = re.compile(r"^-?[0-9]{1,12}(\.[0-9]{1,9})?$")  # an environment value meant as a number

# ---- the same, as schema types -----------------------------------------------------------------------------------
TicketId = Annotated[str, Meta(min_length=1, pattern=TICKET_ID.pattern)]  # min_length: "required" when empty
OptionalTicketId = Annotated[str, Meta(pattern=optional(TICKET_ID).pattern)]
EventId = Annotated[str, Meta(min_length=1, pattern=EVENT_ID.pattern)]
SiteName = Annotated[str, Meta(pattern=SITE_NAME.pattern)]
OptionalAgentId = Annotated[str, Meta(pattern=OPTIONAL_AGENT_ID.pattern)]
OptionalDivision = Annotated[str, Meta(pattern=OPTIONAL_DIVISION.pattern)]
OptionalUniqueid = Annotated[str, Meta(pattern=optional(UNIQUEID).pattern)]
OptionalCallerNumber = Annotated[str, Meta(pattern=optional(CALLER_NUMBER).pattern)]
Direction = Annotated[str, Meta(pattern=DIRECTION.pattern)]
Category = Annotated[str, Meta(pattern=CATEGORY.pattern)]
PayloadKey = Annotated[str, Meta(pattern=PAYLOAD_KEY.pattern)]
Mode = Annotated[str, Meta(pattern=MODE.pattern)]
IntakeChannel = Annotated[str, Meta(pattern=INTAKE_CHANNEL.pattern)]
Urgency = Annotated[str, Meta(pattern=URGENCY.pattern)]
Recording = Annotated[str, Meta(pattern=RECORDING.pattern)]
DecisionValue = Annotated[str, Meta(pattern=DECISION_VALUE.pattern)]
