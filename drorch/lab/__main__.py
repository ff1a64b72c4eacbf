"""`python -m drorch.lab up|down|status|image|partition|heal` - manage the two-site lab.

The lab's directory is $DRORCH_LAB_DIR (default: .cache/lab in the checkout); `--name`
and `--prefix` let a second lab run beside the first (the test suite's lab does this).
"""

from __future__ import annotations

import argparse
import sys

from drorch.cli.output import render
from drorch.lab.lab import Lab
from drorch.lab.layout import LabLayout
from drorch.lab.network import PARTITION_MODES
from drorch.remote.base import RunnerError
from drorch.remote.local import LocalRunner


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
    except (RunnerError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
