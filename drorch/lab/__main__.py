"""`python -m drorch.lab up|down|status|image|partition|heal|config|guest` - the lab.

The lab's directory is $DRORCH_LAB_DIR (default: .cache/lab in the checkout); `--name`
and `--prefix` let a second lab run beside the first (the test suite's lab does this).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from drorch.cli.output import render
from drorch.clock import SystemClock
from drorch.lab.cluster_config import guest_serial_log, lab_cluster_yaml
from drorch.lab.guest import GuestSpec, domain_xml, wait_heartbeat
from drorch.lab.lab import Lab
from drorch.lab.layout import LabLayout
from drorch.lab.network import PARTITION_MODES
from drorch.remote.base import RunnerError
from drorch.remote.local import LocalRunner
from drorch.virt.base import HypervisorError
from drorch.virt.libvirt import LibvirtHypervisor


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m drorch.lab", description=__doc__)
    parser.add_argument("--name", default="default", help="lab instance name")
    parser.add_argument("--prefix", default="", help="prefix of the namespace names")
    parser.add_argument("--subnet", default="10.77.0", help="first three octets of the /24")
    parser.add_argument("--format", dest="fmt", choices=("table", "json", "yaml"), default="table")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="build the guest image, create namespaces, start both sites")
    sub.add_parser("down", help="stop guests and daemons by PID, delete the namespaces")
    sub.add_parser("status", help="what runs")
    sub.add_parser("image", help="build (or show) the cached guest image")
    part = sub.add_parser("partition", help="cut the WAN between the sites")
    part.add_argument("--mode", choices=PARTITION_MODES, default="drop")
    sub.add_parser("heal", help="undo any partition")
    cfg = sub.add_parser("config", help="print the lab's cluster config (libvirt driver)")
    cfg.add_argument("--guest", action="append", help="VM names (default: labvm)")
    g = sub.add_parser("guest", help="define and start a heartbeat guest at a site")
    g.add_argument("guest_name", metavar="NAME")
    g.add_argument("--site", default="siteA")
    g.add_argument("--memory", type=int, default=128, help="MiB (at least 72)")
    g.add_argument(
        "--cmdline", default="", help='guest switches, e.g. "dirty=16" or "disk=1" (see init.sh)'
    )
    args = parser.parse_args(argv)

    layout = LabLayout(name=args.name, prefix=args.prefix, subnet=args.subnet)
    lab = Lab(layout, LocalRunner())
    try:
        if args.command == "up":
            image = lab.up()
            print(f"guest kernel {image.kernel}\nguest initrd {image.initrd}", file=sys.stderr)
            render(lab.status(), args.fmt)
        elif args.command == "down":
            for line in lab.down():
                print(line, file=sys.stderr)
            print(f"lab {layout.name} is down", file=sys.stderr)
        elif args.command == "status":
            render(lab.status(), args.fmt)
        elif args.command == "image":
            image = lab.image()
            render({"kernel": str(image.kernel), "initrd": str(image.initrd)}, args.fmt)
        elif args.command == "partition":
            lab.partition(args.mode)
            print(f"WAN cut ({args.mode}) between {', '.join(layout.site_names)}", file=sys.stderr)
        elif args.command == "heal":
            lab.heal()
            print("WAN healed", file=sys.stderr)
        elif args.command == "config":
            print(lab_cluster_yaml(layout, args.guest or ["labvm"]), end="")
        elif args.command == "guest":
            spec = GuestSpec(args.guest_name, memory_mib=args.memory, cmdline=args.cmdline)
            log = Path(guest_serial_log(layout, spec.name))
            xml = domain_xml(spec, lab.image(), log)
            with LibvirtHypervisor.connect(layout.local_uri(args.site), args.site) as hyp:
                hyp.define(xml)
                hyp.start(spec.name)
            beat = wait_heartbeat(log, SystemClock(), timeout=60)
            print(f"{spec.name} runs at {args.site}: HEARTBEAT {beat} in {log}", file=sys.stderr)
    except (RunnerError, OSError, HypervisorError, TimeoutError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
