"""`python3 docker/compose.py -p PROJECT up | down [-v] | ps`: docker/compose.yaml on Podman, without podman-compose.

Debian 12's podman-compose (1.0.3) cannot run this file: it adds a project network (`--net P_default`) to every
container next to `network_mode: host`, and it starts every service at once, ignoring `depends_on` conditions
(so Asterisk would start before `render` wrote its config). This driver implements exactly the compose keys the
file uses and refuses any other, so the file and what runs cannot drift apart:

- `${VAR}`, `${VAR:-default}`, `${VAR:?message}` from the environment, `x-` extension keys and YAML merge keys;
- services started in `depends_on` order, waiting for `service_completed_successfully` (the exit code must be 0)
  and `service_healthy` (the image's HEALTHCHECK, run with `podman healthcheck run`: no systemd timers here);
- named volumes as `PROJECT_NAME`, containers as `PROJECT_SERVICE`, all labelled with the project.

`up` and `ps` print `{"service": "container id"}` as JSON; `down` stops and removes the project's containers by
id (newest first) and, with `-v`, its volumes. Podman runs with `CONTAINERS_CONF` (default
docker/podman/containers.conf next to this file). Standard library and PyYAML only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
LABEL = "org.linkage.compose.project"
SERVICE_KEYS = {"image", "network_mode", "read_only", "cap_drop", "security_opt", "entrypoint", "command",
                "volumes", "tmpfs", "group_add", "depends_on", "restart", "stop_grace_period", "user",
                "environment"}
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:-|:\?)([^}]*))?\}")


class ComposeError(Exception):
    pass


def interpolate(value: Any, env: dict[str, str], strict: bool = True) -> Any:
    """`strict=False` (down, ps: only names matter) lets a `${VAR:?…}` without its variable pass as empty."""
    if isinstance(value, dict):
        return {k: interpolate(v, env, strict) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env, strict) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, op, arg = m.group(1), m.group(2), m.group(3) or ""
        if env.get(name):
            return env[name]
        if op == ":?" and strict:
            raise ComposeError(f"{name}: {arg or 'required'}")
        return arg if op == ":-" else ""

    return _VAR.sub(sub, value)


def load(path: Path, env: dict[str, str], strict: bool = True) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    services = interpolate(data.get("services") or {}, env, strict)
    for name, svc in services.items():
        unknown = set(svc) - SERVICE_KEYS
        if unknown:
            raise ComposeError(f"{path}: service {name}: keys this driver does not implement: {sorted(unknown)}")
        if svc.get("network_mode", "host") != "host":
            raise ComposeError(f"{path}: service {name}: only network_mode host is implemented")
        for dep, spec in (svc.get("depends_on") or {}).items():
            if dep not in services or (spec or {}).get("condition", "service_started") not in CONDITIONS:
                raise ComposeError(f"{path}: service {name}: depends_on {dep}: unknown service or condition")
    return {"services": services, "volumes": list(data.get("volumes") or {})}


def order(services: dict[str, Any]) -> list[str]:
    done: list[str] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in path:
            raise ComposeError(f"depends_on cycle: {' -> '.join((*path, name))}")
        if name not in done:
            for dep in services[name].get("depends_on") or {}:
                visit(dep, (*path, name))
            done.append(name)

    for name in services:
        visit(name, ())
    return done


class Podman:
    def __init__(self, project: str) -> None:
        self.project = project
        self.env = dict(os.environ)
        self.env.setdefault("CONTAINERS_CONF", str(HERE / "podman" / "containers.conf"))

    def run(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(["podman", "--runtime", "runc", *args], capture_output=True, text=True,
                              env=self.env, timeout=timeout, check=False)
        # no systemd here: Podman cannot arm health-check timers and says so on every run (checks run on demand)
        proc.stderr = "".join(line for line in proc.stderr.splitlines(keepends=True)
                              if "unable to get systemd connection" not in line)
        if check and proc.returncode != 0:
            raise ComposeError(f"podman {' '.join(args[:3])}…: exit {proc.returncode}: {proc.stderr.strip()}")
        return proc

    def ids(self) -> dict[str, str]:
        out = self.run("ps", "-a", "--filter", f"label={LABEL}={self.project}", "--format",
                       '{{.ID}} {{index .Labels "org.linkage.compose.service"}}').stdout
        return {svc: cid for cid, svc in (line.split() for line in out.splitlines() if line.strip())}


def run_argv(project: str, name: str, svc: dict[str, Any], volumes: list[str]) -> list[str]:
    argv = ["run", "-d", "--name", f"{project}_{name}", "--label", f"{LABEL}={project}",
            "--label", f"org.linkage.compose.service={name}", "--network", "host"]
    if svc.get("read_only"):
        argv.append("--read-only")
    argv += [f"--cap-drop={c}" for c in svc.get("cap_drop", [])]
    argv += [f"--security-opt={o}" for o in svc.get("security_opt", [])]
    argv += [f"--group-add={g}" for g in svc.get("group_add", [])]
    argv += [f"--tmpfs={t}" for t in svc.get("tmpfs", [])]
    if "user" in svc:
        argv.append(f"--user={svc['user']}")
    for key, value in (svc.get("environment") or {}).items():
        argv.append(f"--env={key}={value}")
    for spec in svc.get("volumes", []):
        source, _, rest = spec.partition(":")
        if source in volumes:
            source = f"{project}_{source}"
        argv.append(f"--volume={source}:{rest}")
    if "restart" in svc:
        argv.append(f"--restart={svc['restart']}")
    if "stop_grace_period" in svc:
        argv.append(f"--stop-timeout={int(str(svc['stop_grace_period']).rstrip('s'))}")
    entry = svc.get("entrypoint")
    if entry:
        argv += ["--entrypoint", json.dumps(entry)]
    return [*argv, svc["image"], *svc.get("command", [])]


def wait_for(pm: Podman, cid: str, name: str, condition: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    if condition == "service_completed_successfully":
        code = pm.run("wait", cid, timeout=timeout).stdout.strip()
        if code != "0":
            logs = pm.run("logs", cid, check=False).stderr[-2000:]
            raise ComposeError(f"service {name} exited {code}:\n{logs}")
        return
    while condition == "service_healthy":
        if pm.run("healthcheck", "run", cid, check=False, timeout=30).returncode == 0:
            return
        restarts = pm.run("inspect", "--format", "{{.RestartCount}}", cid, check=False).stdout.strip()
        if time.monotonic() > deadline or restarts not in ("", "0"):
            logs = pm.run("logs", cid, check=False).stderr[-2000:]
            raise ComposeError(f"service {name} not healthy (restarts: {restarts or '?'}, waited at most "
                               f"{timeout:.0f} s):\n{logs}")
        time.sleep(0.5)


def up(pm: Podman, compose: dict[str, Any], timeout: float) -> dict[str, str]:
    services = compose["services"]
    existing = pm.ids()
    if existing:
        raise ComposeError(f"project {pm.project} has containers already ({', '.join(existing)}): down first")
    for vol in compose["volumes"]:
        if pm.run("volume", "exists", f"{pm.project}_{vol}", check=False).returncode != 0:
            pm.run("volume", "create", "--label", f"{LABEL}={pm.project}", f"{pm.project}_{vol}")
    started: dict[str, str] = {}
    for name in order(services):
        svc = services[name]
        for dep, spec in (svc.get("depends_on") or {}).items():
            wait_for(pm, started[dep], dep, (spec or {}).get("condition", "service_started"), timeout)
        started[name] = pm.run(*run_argv(pm.project, name, svc, compose["volumes"])).stdout.strip()
    return started


def down(pm: Podman, compose: dict[str, Any], volumes: bool) -> None:
    services = compose["services"]
    ids = pm.ids()
    for name in reversed(order(services)):
        if name in ids:
            grace = str(services[name].get("stop_grace_period", "10")).rstrip("s")
            pm.run("stop", "-t", grace, ids[name], check=False, timeout=int(grace) + 30)
            pm.run("rm", "-f", ids[name], check=False)
    if volumes:
        for vol in compose["volumes"]:
            pm.run("volume", "rm", "-f", f"{pm.project}_{vol}", check=False)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="compose.py", description=__doc__.splitlines()[0])
    p.add_argument("-f", "--file", default=str(HERE / "compose.yaml"))
    p.add_argument("-p", "--project", required=True)
    p.add_argument("--timeout", type=float, default=90, help="seconds to wait for a dependency's condition")
    p.add_argument("command", choices=["up", "down", "ps"])
    p.add_argument("-v", "--volumes", action="store_true", help="down: remove the project's named volumes too")
    args = p.parse_args(argv)
    pm = Podman(args.project)
    try:
        compose = load(Path(args.file), dict(os.environ), strict=args.command == "up")
        if args.command == "up":
            try:
                print(json.dumps(up(pm, compose, args.timeout)))
            except (ComposeError, subprocess.TimeoutExpired):
                down(pm, compose, volumes=False)  # nothing half-started is left running
                raise
        elif args.command == "down":
            down(pm, compose, args.volumes)
        else:
            print(json.dumps(pm.ids()))
    except (ComposeError, subprocess.TimeoutExpired) as exc:
        print(f"compose.py: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
