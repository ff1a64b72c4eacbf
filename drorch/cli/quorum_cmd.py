"""`drorch quorum certs|status`: pinned certificates and the witness's view of a cluster."""

from __future__ import annotations

from pathlib import Path

import click

from drorch.cli.flags import duration
from drorch.cli.output import format_option, render


@click.group("quorum")
def quorum() -> None:
    """The external quorum witness: certificates and status."""


@quorum.command("certs")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write NAME.crt and NAME.key (mode 0600) into.",
)
@click.argument("names", nargs=-1, required=True)
def certs(out_dir: Path, names: tuple[str, ...]) -> None:
    """Write a self-signed certificate (EC P-256) and key for each NAME; print
    `NAME sha256:<fingerprint>` per name. Existing files are never overwritten."""
    from drorch.quorum.tls import generate_self_signed

    if len(set(names)) != len(names):
        raise click.UsageError("each NAME may be given once")
    clashes = [
        str(out_dir / f"{n}{ext}")
        for n in names
        for ext in (".crt", ".key")
        if (out_dir / f"{n}{ext}").exists()
    ]
    if clashes:
        raise click.ClickException("refusing to overwrite pinned identities: " + ", ".join(clashes))
    for name in names:
        try:
            _, _, fingerprint = generate_self_signed(name, out_dir)
        except (ValueError, OSError) as exc:
            raise click.ClickException(f"{name}: {exc}") from exc
        click.echo(f"{name} {fingerprint}")


@quorum.command("status")
@click.option("--server", required=True, help="The witness as HOST:PORT.")
@click.option("--fingerprint", required=True, help="The witness certificate's pin, sha256:<hex>.")
@click.option(
    "--cert",
    required=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="This site's client certificate.",
)
@click.option(
    "--key",
    required=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="This site's private key.",
)
@click.option("--cluster", required=True, help="Cluster name as in the witness config.")
@click.option("--site", required=True, help="This site's name.")
@click.option("--node", required=True, help="This node's name (logged by the witness).")
@click.option(
    "--timeout",
    default="5s",
    show_default=True,
    callback=duration,
    help="For the whole query, e.g. 5s.",
)
@format_option()
def status(
    server: str,
    fingerprint: str,
    cert: Path,
    key: Path,
    cluster: str,
    site: str,
    node: str,
    timeout: float,
    fmt: str,
) -> None:
    """Ask the witness for its view (hello + one want:false heartbeat) and print the vote.
    Nothing changes on the witness: want:false neither grants, renews nor releases."""
    from drorch.quorum.client import QuorumError, query_vote
    from drorch.quorum.tls import normalize_fingerprint

    try:
        pin = normalize_fingerprint(fingerprint)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--fingerprint") from exc
    try:
        vote = query_vote(server, pin, cert, key, cluster, site, node, timeout)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--server") from exc
    except QuorumError as exc:
        raise click.ClickException(str(exc)) from exc
    render(
        {
            "seq": vote.seq,
            "granted": vote.granted,
            "epoch": vote.epoch,
            "holder": vote.holder,
            "lease_ms": vote.lease_ms,
        },
        fmt,
    )
