"""A small valid config, assembled from sections so each bad-config case replaces one."""

from __future__ import annotations

SECTIONS: dict[str, str] = {
    "head": "cluster: shop\nprimary_site: A\n",
    "sites": """\
sites:
  A:
    nodes:
      - name: a1
        address: local
  B:
    nodes:
      - name: b1
        address: root@192.0.2.20:22
""",
    "witness": """\
witness:
  address: 127.0.0.1:7443
  fingerprint: "sha256:abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789"
""",
    "volumes": """\
volumes:
  - name: data
    driver: pyrepl
    mode: sync
    size: 64MiB
    port: 7789
    paths: {a1: /srv/data.img, b1: /srv/data.img}
""",
    "vms": """\
vms:
  - name: db
    domain: db
    volumes: [data]
    migratable: false
  - name: web
    volumes: [data]
    migratable: true
""",
    "services": """\
services:
  - name: app
    start: systemctl start app
    stop: systemctl stop app
    depends_on: [db, web]
    monitors:
      - name: port
        type: tcp
        target: 127.0.0.1:8080
        interval: 10s
        timeout: 2s
""",
    "fencing": "fencing:\n  watchdog: soft\n  watchdog_timeout: 5s\n  margin: 1s\n",
    "quorum": "quorum:\n  heartbeat: 1s\n  lease_timeout: 10s\n  switch_delay: 5s\n",
    "drills": """\
drills:
  - name: weekly
    kind: live
    schedule: "0 3 * * sun"
    target: B
""",
}


def config_text(**replace: str) -> str:
    """The valid config with some sections replaced (an empty string drops a section)."""
    parts = {**SECTIONS, **replace}
    extra = [v for k, v in replace.items() if k not in SECTIONS]
    return "".join(v for k, v in parts.items() if k in SECTIONS) + "".join(extra)
