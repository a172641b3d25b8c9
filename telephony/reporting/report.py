"""`linkage report --from DATE --to DATE [--site NAME] --out DIR`: the quarterly review as HTML (and PDF with
`--pdf`, printed by headless Chromium). Input is checked before the database is opened: dates are calendar days
in `--tz`, from ≤ to, at most MAX_DAYS; the site is a site name; the out dir is a folder or can be made one.
Caller numbers are masked unless `--full` (the supervisor's own report, not to be shared)."""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from telephony import ids
from telephony.config.schema import Reporting
from telephony.errors import InvalidInput
from telephony.reporting import html
from telephony.reporting.db import resolve
from telephony.reporting.stats import Period, collect

MAX_DAYS = 400
EARLY_RELEASE = Reporting().early_release_seconds
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("report", help="write the quarterly review (HTML, PDF) from the reporting database")
    p.add_argument("--from", dest="start", required=True, help="first day, YYYY-MM-DD")
    p.add_argument("--to", dest="end", required=True, help="last day (included), YYYY-MM-DD")
    p.add_argument("--site", help="only the ticket copies this site holds")
    p.add_argument("--out", required=True, help="folder for report.html (and report.pdf)")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--config", help="a site file: its reporting.url")
    where.add_argument("--db", help="sqlite:///PATH or postgresql://…")
    p.add_argument("--tz", default="Asia/Shanghai", help="the time zone of the days (default Asia/Shanghai)")
    p.add_argument("--full", action="store_true", help="caller numbers unmasked: the supervisor's own report")
    p.add_argument("--pdf", action="store_true", help="also print report.pdf with headless Chromium")
    p.add_argument("--early-release", type=early_seconds, metavar="N",
                   help=f"排队早释: hung up within N s in queue (default: the site file's, else {EARLY_RELEASE})")
    p.set_defaults(func=run)


def period(start: str, end: str, tz: str, flag: str = "--", max_days: int = MAX_DAYS) -> tuple[float, float]:
    """[first day 00:00, day after the last 00:00) in the zone, as epoch seconds. `flag` prefixes the names in
    the errors (`--from` on the command line, `from` in a query string)."""
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidInput(f"{flag}tz: {tz!r} is not a time zone", key="tz") from exc
    days = []
    for key, value in (("from", start), ("to", end)):
        try:
            if not DATE.match(value):
                raise ValueError(value)
            days.append(date.fromisoformat(value))
        except ValueError as exc:
            raise InvalidInput(f"{flag}{key}: {value!r} is not a date YYYY-MM-DD", key=key) from exc
    if days[0] > days[1]:
        raise InvalidInput(f"{flag}from {start} is after {flag}to {end}", key="from")
    if (days[1] - days[0]).days + 1 > max_days:
        raise InvalidInput(f"{flag}from … {flag}to spans more than {max_days} days", key="to")
    first = datetime.combine(days[0], time(), zone)
    after = datetime.combine(days[1] + timedelta(days=1), time(), zone)
    return first.timestamp(), after.timestamp()


def early_seconds(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 600:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number of seconds from 1 to 600")
    return int(value)


def out_dir(value: str) -> Path:
    path = Path(value)
    if path.exists() and not path.is_dir():
        raise InvalidInput(f"--out: {value} exists and is not a folder", key="out")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidInput(f"--out: {value} cannot be made a folder ({exc.strerror})", key="out") from exc
    return path


def site_name(value: str | None) -> str | None:
    if value is not None and not ids.SITE_NAME.match(value):
        raise InvalidInput(f"--site: {value!r} is not a site name", key="site")
    return value


def database_url(args: argparse.Namespace) -> tuple[str, int]:
    """The database and the early-release seconds: the site file's, or --db's with the default."""
    if args.db:
        return str(args.db), EARLY_RELEASE
    from telephony.config import load_site_config

    config = load_site_config(args.config)
    if not config.reporting.url:
        raise InvalidInput(f"--config: {args.config} has no reporting.url", key="config")
    return resolve(config.reporting.url, str(Path(args.config).parent)), config.reporting.early_release_seconds


def write(args: argparse.Namespace) -> Path:
    start, end = period(args.start, args.end, args.tz)
    site = site_name(args.site)
    out = out_dir(args.out)
    url, early = database_url(args)
    if args.early_release is not None:
        early = args.early_release
    count, shown = collect(url, Period(start, end, args.tz, site, early, args.full))
    scope = f"站点 {site} 持有的联动单" if site else "全部站点（每件联动单取一份）"
    page = html.render(f"联动会商报告 {args.start} 至 {args.end}",
                       f"{args.start} 至 {args.end}（{args.tz}）期间创建联动单 {count} 件，范围：{scope}"
                       + ("；来电号码完整显示——督办人员专用，请勿外传" if args.full else ""),
                       shown)
    target = out / "report.html"
    target.write_text(page, encoding="utf-8")
    if args.pdf:
        pdf(target)
    return target


def pdf(page: Path) -> Path:
    browser = next((b for b in CHROMIUM if shutil.which(b)), None)
    if browser is None:
        raise InvalidInput("--pdf: Chromium is not installed", key="pdf")
    target = page.with_suffix(".pdf")
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", f"--print-to-pdf={target}",
                    "--no-pdf-header-footer", page.resolve().as_uri()], check=True, capture_output=True, timeout=120)
    return target


def run(args: argparse.Namespace) -> int:
    target = write(args)
    print(f"wrote {target}")
    return 0
