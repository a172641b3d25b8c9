"""A site's configuration: the types (schema.py, shaped like the YAML file), loading and checking (load.py),
and the TLS contexts built from it at start (tls.py)."""

from telephony.config.load import FIXED_FEATURE_KEYS, _apply_env, load_site_config, parse_site_config
from telephony.config.schema import (
    Accounts,
    Agent,
    AmiConfig,
    Bench,
    Citizen,
    Controller,
    Deadlines,
    Delivery,
    HostPort,
    Http,
    Keys,
    ListenerTls,
    Pbx,
    Peer,
    PeerTls,
    Redis,
    Security,
    Site,
    SiteConfig,
    Storage,
    Target,
    Threeway,
    Transfer,
)
from telephony.config.tls import SiteTls, build_tls

__all__ = [
    "FIXED_FEATURE_KEYS", "Accounts", "Agent", "AmiConfig", "Bench", "Citizen", "Controller", "Deadlines",
    "Delivery", "HostPort", "Http", "Keys", "ListenerTls", "Pbx", "Peer", "PeerTls", "Redis", "Security", "Site",
    "SiteConfig", "SiteTls", "Storage", "Target", "Threeway", "Transfer", "_apply_env", "build_tls",
    "load_site_config", "parse_site_config",
]
