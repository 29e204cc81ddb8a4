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
    parser.add_argument(
        "--processes",
        type=int,
        metavar="N",
        help="HTTP processes on the one listener, each with [server] workers threads (default: [server] processes, 1); "
        "above 1 a supervisor process keeps the scheduler and /metrics and serves no SCIM",
    )
    parser.set_defaults(handler=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    from syncd.config import MAX_PROCESSES
    from syncd.service.serve import ServeError, serve

    if args.processes is not None and not 1 <= args.processes <= MAX_PROCESSES:
        raise CliError(f"--processes: expected 1 to {MAX_PROCESSES}, got {args.processes}")
    try:
        return serve(args.config, listen=args.listen, metrics_listen=args.metrics_listen, processes=args.processes)
    except ServeError as error:
        raise CliError(str(error)) from None
