"""``syncd serve``: run SCIM, the admin API, health, metrics and the scheduler as one service (see syncd/service/serve.py)."""

from __future__ import annotations

import argparse

from syncd.cli.errors import CliError


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser(
        "serve",
        help="run the service (HTTP and scheduler)",
        description=(
            "Serve SCIM at /scim/v2, /healthz, /readyz and the admin API, /metrics on its own listener, and run every "
            "source on its schedule. SIGTERM stops gracefully within server.shutdown_timeout; SIGHUP reloads the config. "
            "Under systemd it notifies readiness and pings the watchdog (systemd/syncd.service)."
        ),
    )
    parser.add_argument("--listen", metavar="HOST:PORT", help="address to listen on (default: [server] listen)")
    parser.add_argument(
        "--metrics-listen",
        metavar="HOST:PORT",
        help="address of the /metrics listener (default: [server] metrics_listen, 127.0.0.1:9464; '' serves none)",
    )
    parser.set_defaults(handler=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    from syncd.service.serve import ServeError, serve

    try:
        return serve(args.config, listen=args.listen, metrics_listen=args.metrics_listen)
    except ServeError as error:
        raise CliError(str(error)) from None
