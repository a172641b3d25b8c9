# The Linkage controller of one site: AMI client, FastAGI server, HTTP API, delivery workers.
# Build from the repository root:  docker build -f docker/controller.Dockerfile -t linkage-controller .
# Run with the site's YAML mounted at /etc/linkage/site.yaml (readable by uid 10001) and host networking.

FROM debian:bookworm AS build
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/linkage
WORKDIR /src
COPY pyproject.toml constraints.txt ./
COPY telephony ./telephony
RUN /opt/linkage/bin/pip install --no-cache-dir --disable-pip-version-check -c constraints.txt .
# `linkage config render` reads its templates from the directory above the installed package (render.py ROOT);
# they are not package data, so put them where it looks.
COPY config/asterisk /tmp/templates/config/asterisk
COPY dialplans /tmp/templates/dialplans
RUN purelib=$(/opt/linkage/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') \
 && mkdir -p "$purelib/config" \
 && cp -r /tmp/templates/config/asterisk "$purelib/config/asterisk" \
 && cp -r /tmp/templates/dialplans "$purelib/dialplans" \
 && rm -rf /tmp/templates


FROM debian:bookworm
ARG DEBIAN_FRONTEND=noninteractive
# ca-certificates: peers may be reached over HTTPS.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
ARG LINKAGE_UID=10001
RUN groupadd --system --gid "$LINKAGE_UID" linkage \
 && useradd --system --uid "$LINKAGE_UID" --gid linkage --home-dir /var/lib/linkage --create-home \
      --shell /usr/sbin/nologin linkage \
 && mkdir -p /etc/linkage
COPY --from=build /opt/linkage /opt/linkage
ENV PATH=/opt/linkage/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER linkage
WORKDIR /var/lib/linkage

# The real ports are controller.http.port and pbx.agi.port of the site's YAML; these defaults only document them
# (sites run with host networking, as the lab does).
ARG HTTP_PORT=8080
ARG AGI_PORT=4573
EXPOSE ${HTTP_PORT}/tcp ${AGI_PORT}/tcp

# Asks /v1/health on the address and port the site's YAML (plus LINKAGE_* overrides) gives; 503 or no answer fails.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["/opt/linkage/bin/python", "-c", "import urllib.request as u; from telephony.config import load_site_config as load; c = load('/etc/linkage/site.yaml'); h = c.http.host; h = {'0.0.0.0': '127.0.0.1', '::': '::1'}.get(h, h); h = f'[{h}]' if ':' in h else h; u.urlopen(f'http://{h}:{c.http.port}/v1/health', timeout=4)"]

ENTRYPOINT ["linkage", "serve", "--config", "/etc/linkage/site.yaml"]
