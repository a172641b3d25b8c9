"""`linkage` command line: serve a site, render config, check an existing Asterisk (doctor), list and replay dead
letters, write the review report;
plus the sub-commands that installed plugins add through the `linkage.cli` entry points (the repository's lab
tooling adds `lab`, `scenario` and `demo`)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING

from telephony.errors import LinkageError

if TYPE_CHECKING:
    from telephony.delivery.deadletters import DeadLetter


def _serve(args: argparse.Namespace) -> int:
    from telephony import logs
    from telephony.config import load_site_config
    from telephony.controller import serve
    from telephony.sites import site_config_path

    logs.configure(args.log_level)
    path = args.config or str(site_config_path(args.site))
    config = load_site_config(path)
    if args.site and args.site != config.site.name:
        print(f"linkage: {path} is the config of site {config.site.name}, not {args.site}", file=sys.stderr)
        return 2
    asyncio.run(serve(config))
    return 0


def _config(args: argparse.Namespace) -> int:
    from telephony.config import load_site_config
    from telephony.pbx.render import PbxExtras, render, write

    config = load_site_config(args.config)
    out = Path(args.out)
    start, end = args.rtp_ports
    files = render(config, PbxExtras(str(out.resolve()), "tester", args.tester_secret, start, end))
    write(files, out / "etc")
    print(f"rendered {len(files)} files for site {config.site.name} into {out / 'etc'} "
          f"(Asterisk: asterisk -C {out.resolve() / 'etc' / 'asterisk.conf'})")
    return 0


def _port_range(text: str) -> tuple[int, int]:
    start, sep, end = text.partition("-")
    if not (sep and start.isdigit() and end.isdigit() and 1024 <= int(start) < int(end) <= 65535):
        raise argparse.ArgumentTypeError(f"{text!r} is not START-END with 1024 <= START < END <= 65535")
    return int(start), int(end)


def _doctor(args: argparse.Namespace) -> int:
    from telephony.config import load_site_config
    from telephony.doctor import diagnose

    config = load_site_config(args.config)
    report = diagnose(Path(args.asterisk_etc), config, version=args.asterisk_version, binary=args.asterisk_bin,
                      root=Path(args.root) if args.root else None, controller=args.controller_address)
    print(report.to_json() if args.json else report.to_text())
    return 0 if report.ok else 1


def _dead(args: argparse.Namespace) -> int:
    from telephony.config import load_site_config

    config = load_site_config(args.config)
    peers = [p.name for p in config.peers]
    if args.peer is not None and args.peer not in peers:
        print(f"linkage: {args.config} has no peer named {args.peer!r} (peers: {', '.join(peers)})",
              file=sys.stderr)
        return 2
    if args.dead_cmd != "list" and args.peer is None:
        print(f"linkage: dead {args.dead_cmd} needs --peer", file=sys.stderr)
        return 2
    if args.dead_cmd == "drop" and (args.index is None or args.all):
        print("linkage: dead drop takes one --index", file=sys.stderr)
        return 2
    if args.dead_cmd == "replay" and (args.index is None) == (not args.all):
        print("linkage: dead replay takes --index N or --all", file=sys.stderr)
        return 2
    if args.dead_cmd == "drop" and not args.yes:
        print("linkage: dropping a dead letter loses that message for good; add --yes to confirm",
              file=sys.stderr)
        return 2
    return asyncio.run(_dead_run(args, config.redis.url, config.storage.keys, [args.peer] if args.peer else peers))


async def _dead_run(args: argparse.Namespace, redis_url: str, keys: tuple[str, ...], peers: list[str]) -> int:
    import redis.asyncio as aioredis

    from telephony.delivery import deadletters
    from telephony.security.sealing import Sealer
    from telephony.tickets.store import STORE_ERRORS

    redis = aioredis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=2)
    sealer = Sealer(keys)
    try:
        if args.dead_cmd == "list":
            listing = [(peer, await deadletters.entries(redis, sealer, peer)) for peer in peers]
            print(_dead_listing(listing, args.json))
        elif args.dead_cmd == "replay":
            if args.all:
                moved = await deadletters.replay_all(redis, sealer, peers[0])
            else:
                moved = await deadletters.replay_one(redis, sealer, peers[0], args.index)
            print(f"replayed {moved} message(s) to the tail of peer {peers[0]}'s outbox; a running controller "
                  "sends them within a second once the messages ahead are delivered")
        else:
            await deadletters.drop(redis, peers[0], args.index, confirm=args.yes)
            print(f"dropped dead letter {args.index} of peer {peers[0]}")
        return 0
    except STORE_ERRORS as exc:
        print(f"linkage: cannot reach Redis (redis.url of {args.config}): {exc.__class__.__name__}",
              file=sys.stderr)
        return 1
    finally:
        await redis.aclose()


def _dead_listing(listing: list[tuple[str, list[DeadLetter]]], as_json: bool) -> str:
    if as_json:
        return json.dumps({"peers": [{"peer": peer, "count": len(items), "items": [i.to_dict() for i in items]}
                                     for peer, items in listing]}, ensure_ascii=False, indent=2)
    lines = []
    for peer, items in listing:
        lines.append(f"peer {peer}: {len(items)} dead letter(s)")
        for i in items:
            parked = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(i.parked_at)) if i.parked_at else "-"
            event = f"{i.event_type} {i.event_id}" if i.kind == "event" else "-"
            lines.append(f"  [{i.index}] {i.kind} ticket {i.ticket_id} event {event} parked {parked}: {i.error}")
    return "\n".join(lines)


PLUGIN_GROUP = "linkage.cli"
# The documented sub-commands that the lab tooling (package linkage_lab) adds. Where it is not installed (the
# production image) they still parse, and say what is missing instead of argparse's "invalid choice".
LAB_COMMANDS = ("lab", "scenario", "demo")

SubParsers = argparse._SubParsersAction  # what argparse's add_subparsers returns; plugins add to it


def _add_plugins(sub: SubParsers[argparse.ArgumentParser]) -> None:
    """Each `linkage.cli` entry point is a function that adds its sub-command to `sub`. An entry point whose
    module is absent (the metadata installed, the package not copied, as in the production image) is skipped;
    any other import error is a broken plugin and surfaces."""
    added = set()
    for ep in entry_points(group=PLUGIN_GROUP):
        try:
            add = ep.load()
        except ModuleNotFoundError as exc:
            if exc.name and (ep.module == exc.name or ep.module.startswith(exc.name + ".")):
                continue
            raise
        add(sub)
        added.add(ep.name)
    for name in LAB_COMMANDS:
        if name not in added:
            p = sub.add_parser(name, help="(the lab tooling is not installed)", add_help=False)
            p.set_defaults(func=_not_installed)


def _not_installed(args: argparse.Namespace) -> int:
    print(f"linkage: `linkage {args.cmd}` comes with the lab tooling (package linkage_lab), which is not installed "
          "here; install the repository with its lab (`make setup`, or `pip install -e .` in a checkout)",
          file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="linkage", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("serve", help="run the controller of one site")
    p.add_argument("--site", help="site name; its lab config is used unless --config is given")
    p.add_argument("--config", help="the site's YAML config file")
    p.add_argument("--log-level", default="info")
    p.set_defaults(func=_serve)

    p = sub.add_parser("config", help="render a site's Asterisk config and dialplan")
    p.add_argument("config_cmd", choices=["render"])
    p.add_argument("--config", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--tester-secret", default="changeme1")
    p.add_argument("--rtp-ports", type=_port_range, default=(30000, 30998), metavar="START-END",
                   help="the PBX's RTP port range (rtp.conf; default 30000-30998): sites sharing a host need their own")
    p.set_defaults(func=_config)

    p = sub.add_parser("doctor", help="check an existing Asterisk configuration for what stands in Linkage's way")
    p.add_argument("--asterisk-etc", required=True, help="Asterisk's etc directory (read only, never changed)")
    p.add_argument("--config", required=True, help="the site's YAML config file (keys, agents, trunks, AMI user)")
    p.add_argument("--asterisk-version", help="the PBX's Asterisk version, when it cannot be read here")
    p.add_argument("--asterisk-bin", help="an asterisk binary to ask (`-V`); default: asterisk on PATH")
    p.add_argument("--root", help="the PBX's root filesystem: its usr/sbin/asterisk gives the version, and "
                   "absolute #include paths are read under it")
    p.add_argument("--controller-address", help="the address the controller connects to AMI from")
    p.add_argument("--json", action="store_true", help="findings as JSON")
    p.set_defaults(func=_doctor)

    p = sub.add_parser("dead", help="list, replay or drop the messages a peer refused for good")
    p.add_argument("dead_cmd", choices=["list", "replay", "drop"])
    p.add_argument("--config", required=True, help="the site's YAML config file")
    p.add_argument("--peer", help="one peer (list: default all; replay and drop: required)")
    p.add_argument("--index", type=int, help="the entry's index, as listed")
    p.add_argument("--all", action="store_true", help="replay: every entry of the peer, in order")
    p.add_argument("--yes", action="store_true", help="drop: confirm the message is to be lost")
    p.add_argument("--json", action="store_true", help="list: as JSON")
    p.set_defaults(func=_dead)

    from telephony.reporting.report import add_parser as add_report

    add_report(sub)
    _add_plugins(sub)

    # parse_args, except that a missing plugin's stand-in takes any options (they are the plugin's)
    args, extra = parser.parse_known_args(argv)
    if extra and args.func is not _not_installed:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.cmd == "serve" and not (args.site or args.config):
        parser.error("serve needs --site or --config")
    try:
        result: int = args.func(args)
        return result
    except LinkageError as exc:
        print(f"linkage: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
