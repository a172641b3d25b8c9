"""The lab tooling's sub-commands of `linkage`: `lab up|down|describe`, `scenario run FILE…` and `demo`.

Each function below is a `linkage.cli` entry point (pyproject.toml): `telephony.cli` calls it with its
sub-parsers, so the product never imports this package and works without it.
"""

from __future__ import annotations

import argparse
import json
import sys

SubParsers = argparse._SubParsersAction  # what argparse's add_subparsers returns


def add_lab(sub: SubParsers[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("lab", help="the built-in two-site lab")
    p.add_argument("lab_cmd", choices=["up", "down", "describe"])
    p.add_argument("--sip-t1", type=int, default=None, metavar="MS",
                   help="SIP T1 of the PBXes for `up` (default: the test suite's 100 ms; a running lab of another "
                        "T1 is restarted)")
    p.set_defaults(func=_lab)


def add_scenario(sub: SubParsers[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("scenario", help="run declarative SIPp scenarios against the lab")
    p.add_argument("scenario_cmd", choices=["run"])
    p.add_argument("files", nargs="+")
    p.add_argument("--junit", default="reports/scenarios.xml")
    p.add_argument("--keep-lab", action="store_true", help="leave the lab up afterwards")
    p.set_defaults(func=_scenario)


def add_demo(sub: SubParsers[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="lab up, one demo call through the one-key transfer, then serve")
    p.add_argument("--exit-after", action="store_true", help="stop the lab and exit after the demo call")
    p.add_argument("--no-demo", action="store_true", help="skip the demo call, just serve the lab")
    p.set_defaults(func=_demo)


def _lab(args: argparse.Namespace) -> int:
    from linkage_lab.lab.lab import SIP_TIMER_T1, Lab

    lab = Lab(sip_timer_t1=SIP_TIMER_T1 if args.sip_t1 is None else args.sip_t1)
    if args.lab_cmd == "up":
        lab.up(log=lambda m: print(m, file=sys.stderr))
        print(json.dumps(lab.describe(), indent=2))
    elif args.lab_cmd == "down":
        lab.down(log=lambda m: print(m, file=sys.stderr))
    else:
        print(json.dumps(lab.describe(), indent=2))
    return 0


def _scenario(args: argparse.Namespace) -> int:
    from linkage_lab.harness.runner import run_files

    return run_files(args.files, junit=args.junit, keep_lab=args.keep_lab)


def _demo(args: argparse.Namespace) -> int:
    from linkage_lab.harness.demo import demo

    return demo(serve=not args.exit_after, skip=args.no_demo)
