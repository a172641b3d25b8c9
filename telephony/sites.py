"""Where `linkage serve --site NAME` finds a site's config when no `--config` is given.

`NAME/linkage.yaml` under `srv/linkage-lab` inside the root filesystem the lab's PBXes run in (`$LINKAGE_ROOTFS`,
default `/var/lib/linkage/rootfs/current`). The lab tooling writes its sites there and imports these names, so the
layout is declared once and `serve --site` works without the lab package installed.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_ROOTFS = "/var/lib/linkage/rootfs/current"
SITES_SUBDIR = "srv/linkage-lab"


def rootfs(override: str | None = None) -> Path:
    return Path(override or os.environ.get("LINKAGE_ROOTFS", DEFAULT_ROOTFS)).resolve()


def site_config_path(site: str) -> Path:
    return rootfs() / SITES_SUBDIR / site / "linkage.yaml"
