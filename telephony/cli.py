"""`linkage` command line: serve a site, run the lab, render config, run scenarios, make the demo call."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from telephony.errors import LinkageError


def _serve(args: argparse.Namespace) -> int:
    from telephony import logs
    from telephony.config import load_site_config
    from telephony.controller import Controller
    from telephony.lab.lab import Lab

    logs.configure(args.log_level)
    path = args.config or str(Lab().dir / args.site / "linkage.yaml")
    config = load_site_config(path)
    if args.site and args.site != config.name:
        print(f"linkage: {path} is the config of site {config.name}, not {args.site}", file=sys.stderr)
        return 2
    asyncio.run(Controller(config).run())
    return 0


def _lab(args: argparse.Namespace) -> int:
    from telephony.lab.lab import Lab

    lab = Lab()
    if args.lab_cmd == "up":
        lab.up(log=lambda m: print(m, file=sys.stderr))
        print(json.dumps(lab.describe(), indent=2))
    elif args.lab_cmd == "down":
        lab.down(log=lambda m: print(m, file=sys.stderr))
    else:
        print(json.dumps(lab.describe(), indent=2))
    return 0


def _config(args: argparse.Namespace) -> int:
    from telephony.config import load_site_config
    from telephony.pbx.render import PbxExtras, render, write

    config = load_site_config(args.config)
    out = Path(args.out)
    files = render(config, PbxExtras(str(out.resolve()), "tester", args.tester_secret, 30000, 30998))
    write(files, out / "etc")
    print(f"rendered {len(files)} files for site {config.name} into {out / 'etc'} "
          f"(Asterisk: asterisk -C {out.resolve() / 'etc' / 'asterisk.conf'})")
    return 0


def _scenario(args: argparse.Namespace) -> int:
    from telephony.harness.runner import run_files

    return run_files(args.files, junit=args.junit, keep_lab=args.keep_lab)


def _demo(args: argparse.Namespace) -> int:
    from telephony.harness.demo import demo

    return demo(serve=not args.exit_after, skip=args.no_demo)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="linkage", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("serve", help="run the controller of one site")
    p.add_argument("--site", help="site name; its lab config is used unless --config is given")
    p.add_argument("--config", help="the site's YAML config file")
    p.add_argument("--log-level", default="info")
    p.set_defaults(func=_serve)

    p = sub.add_parser("lab", help="the built-in two-site lab")
    p.add_argument("lab_cmd", choices=["up", "down", "describe"])
    p.set_defaults(func=_lab)

    p = sub.add_parser("config", help="render a site's Asterisk config and dialplan")
    p.add_argument("config_cmd", choices=["render"])
    p.add_argument("--config", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--tester-secret", default="changeme1")
    p.set_defaults(func=_config)

    p = sub.add_parser("scenario", help="run declarative SIPp scenarios against the lab")
    p.add_argument("scenario_cmd", choices=["run"])
    p.add_argument("files", nargs="+")
    p.add_argument("--junit", default="reports/scenarios.xml")
    p.add_argument("--keep-lab", action="store_true", help="leave the lab up afterwards")
    p.set_defaults(func=_scenario)

    p = sub.add_parser("demo", help="lab up, one demo call through the one-key transfer, then serve")
    p.add_argument("--exit-after", action="store_true", help="stop the lab and exit after the demo call")
    p.add_argument("--no-demo", action="store_true", help="skip the demo call, just serve the lab")
    p.set_defaults(func=_demo)

    args = parser.parse_args(argv)
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
