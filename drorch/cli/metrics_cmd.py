"""`drorch metrics textfile PATH` and `drorch metrics serve --listen HOST:PORT`:
Prometheus metrics of the drills (from the history) and, with -c, of each cluster."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from drorch.cli.loading import EXIT_CONFIG


def _sources(configs: tuple[Path, ...]) -> tuple[list[Any], list[Any]]:
    """Cluster sources (observed at each scrape) and the environments to close."""
    from drorch.cli.loading import load_or_exit
    from drorch.drill.metrics import ClusterSource
    from drorch.envbuild import build_environment_report
    from drorch.observe import observe

    sources, envs = [], []
    for path in configs:
        cluster = load_or_exit(path)
        env, _ = build_environment_report(cluster, path.resolve().parent)
        envs.append(env)
        sources.append(ClusterSource(cluster, _observer(observe, cluster, env)))
    return sources, envs


def _observer(observe: Any, cluster: Any, env: Any) -> Any:
    return lambda: observe(cluster, env).snapshot


def _configs(func: Any) -> Any:
    return click.option("-c", "--config", "configs", multiple=True,
                        type=click.Path(dir_okay=False, path_type=Path),
                        help="Also export this cluster's quorum, replication and watchdog "
                             "state (repeatable).")(func)  # fmt: skip


@click.group()
def metrics() -> None:
    """Prometheus metrics: drill results, RTO, downtime; quorum, replication, watchdog."""


@metrics.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path), required=False)
@_configs
def textfile(path: Path | None, configs: tuple[Path, ...]) -> None:
    """Write the metrics atomically to PATH (node_exporter's textfile collector, e.g.
    /var/lib/node_exporter/textfile/drorch.prom), or print them without PATH."""
    from drorch.drill.metrics import exposition, registry, write_textfile
    from drorch.statedir import default_state_dir

    if path is not None and path.suffix != ".prom":
        click.echo(f"drorch: error: {path}: the textfile collector reads only *.prom files",
                   err=True)  # fmt: skip
        sys.exit(EXIT_CONFIG)
    sources, envs = _sources(configs)
    try:
        data = exposition(registry(default_state_dir(), sources))
    finally:
        for env in envs:
            env.close()
    if path is None:
        click.echo(data.decode(), nl=False)
        return
    try:
        write_textfile(path, data)
    except OSError as exc:
        click.echo(f"drorch: error: cannot write {path}: {exc}", err=True)
        sys.exit(1)
    click.echo(f"wrote {path}", err=True)


@metrics.command()
@click.option("--listen", default="127.0.0.1:9477", show_default=True,
              help="HOST:PORT to serve /metrics on.")  # fmt: skip
@_configs
def serve(listen: str, configs: tuple[Path, ...]) -> None:
    """Serve the metrics over HTTP for Prometheus to scrape (read at each scrape)."""
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from prometheus_client import make_wsgi_app

    from drorch.drill.metrics import registry
    from drorch.model.address import AddressError, parse_host_port
    from drorch.statedir import default_state_dir

    try:
        host, port = parse_host_port(listen)
    except AddressError as exc:
        click.echo(f"drorch: error: --listen: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    sources, envs = _sources(configs)

    class _Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return None

    try:
        server = make_server(host, port, make_wsgi_app(registry(default_state_dir(), sources)),
                             handler_class=_Quiet)  # fmt: skip
    except OSError as exc:
        click.echo(f"drorch: error: cannot listen on {listen}: {exc}", err=True)
        sys.exit(1)
    click.echo(f"serving metrics on http://{listen}/metrics", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        for env in envs:
            env.close()
