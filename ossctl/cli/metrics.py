"""``ossctl metrics serve | dump``: a Prometheus exporter for GPUs, releases, llama-server
and the last bench results. prometheus_client, docker and NVML load inside the commands."""

from __future__ import annotations

import typer

from ossctl.cli import output
from ossctl.cli.options import DockerHost, ProfileFilter

metrics_app = typer.Typer(help="Prometheus metrics: GPUs, releases, llama-server, last bench.",
                          no_args_is_help=True, pretty_exceptions_show_locals=False)


def _exporter(st: output.State, profile: str | None, docker_host: str | None, fetch_timeout: float):
    from ossctl.metrics.exporter import Exporter

    return Exporter(st.settings, profile, docker_host, fetch_timeout=fetch_timeout, log=output.info)


@metrics_app.command("serve", short_help="Serve /metrics for Prometheus until Ctrl-C.")
def serve(
    ctx: typer.Context,
    listen: str = typer.Option("127.0.0.1:9464", "--listen", metavar="HOST:PORT",
                               help="Address to serve /metrics on (loopback unless you say otherwise)."),
    profile: ProfileFilter = None,
    docker_host: DockerHost = None,
    fetch_timeout: float = typer.Option(2.0, "--fetch-timeout", metavar="S", min=0.1,
                                        help="Seconds to wait for the llama-servers' /metrics and /slots."),
) -> None:
    """One scrape per request: GPU memory/utilisation/temperature/power (NVML), GPU memory
    per release next to the VRAM plan, release health, llama-server's own metrics and slots
    re-labelled with profile/release/model, the last bench per profile, and per-source
    error series (a source that fails never fails the scrape)."""
    import signal
    import threading

    from ossctl.metrics import promclient
    from ossctl.serve.profiles import is_loopback

    st = output.state(ctx)
    host, _port = promclient.parse_listen(listen)
    exp = _exporter(st, profile, docker_host, fetch_timeout)
    stop_serving, url = promclient.serve(listen, lambda: exp.scrape().families)
    if not is_loopback(host):
        output.info(f"warning: {host} is not a loopback address: anyone who reaches it can read these metrics")
    output.info(f"serving metrics on {url} (Ctrl-C to stop)")
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        while not done.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass  # Ctrl-C is how the exporter ends
    finally:
        stop_serving()
        exp.close()


@metrics_app.command("dump", short_help="One scrape on stdout (text format, or --json).")
def dump(
    ctx: typer.Context,
    profile: ProfileFilter = None,
    docker_host: DockerHost = None,
    fetch_timeout: float = typer.Option(2.0, "--fetch-timeout", metavar="S", min=0.1,
                                        help="Seconds to wait for the llama-servers' /metrics and /slots."),
) -> None:
    """What `metrics serve` would answer to one scrape, in the Prometheus text format;
    `ossctl --json metrics dump` gives the same samples and each source's error as JSON.
    Exit 0 even when a source failed (its error series says so)."""
    st = output.state(ctx)
    exp = _exporter(st, profile, docker_host, fetch_timeout)
    try:
        scrape = exp.scrape()
    finally:
        exp.close()
    if st.json:
        output.emit(st, scrape.to_dict())
        return
    from ossctl.metrics.promclient import render_text

    output.emit(st, None, lambda: render_text(scrape.families))
