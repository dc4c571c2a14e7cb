"""The ``leasegate`` script: one parser for every subcommand, so ``--help`` lists them all.

``serve`` lives here; ``keygen`` is the workers' CLI's and ``demo`` is leasegate.testing's (the
one import from gateway into testing, allowed by name in the import contract)."""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket
import sys
from importlib.metadata import version

from ..workers import ConfigError

LOOPBACK_NAMES = ("localhost",)
SHUTDOWN_GRACE = 3  # seconds a SIGTERMed serve waits for open streams before closing them


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(ipaddress.ip_address(a[4][0]).is_loopback
                       for a in socket.getaddrinfo(host, None))
        except OSError:
            return False


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--insecure-local", action="store_true",
                        help="no token book: every request is the local operator (loopback "
                             "addresses only)")
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--ssl-certfile", help="serve https with this PEM certificate (chain)")
    parser.add_argument("--ssl-keyfile", help="the PEM private key of --ssl-certfile")


def serve(args: argparse.Namespace) -> int:
    parser: argparse.ArgumentParser = args.parser
    if bool(args.ssl_certfile) != bool(args.ssl_keyfile):
        parser.error("--ssl-certfile and --ssl-keyfile go together: give both or neither")
    for flag, path in (("--ssl-certfile", args.ssl_certfile), ("--ssl-keyfile", args.ssl_keyfile)):
        if path and not os.path.isfile(path):
            parser.error(f"{flag} {path} is not a readable file")
    if not 0 < args.port < 65536:
        parser.error(f"--port must be 1-65535, got {args.port}")
    if args.insecure_local and not is_loopback(args.host):
        parser.error(f"--insecure-local only listens on a loopback address, not {args.host}")
    import uvicorn

    from .app import create_app
    from .settings import GatewaySettings

    try:
        app = create_app(GatewaySettings.from_env(insecure_local=args.insecure_local))
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        print(f"leasegate serve: {exc}", file=sys.stderr)
        return 2
    # the console's access log would carry cookies and query strings, never tokens: those
    # travel in headers, which uvicorn does not log
    # SSE streams never end on their own: a deploy's SIGTERM closes them after a short grace,
    # and clients resume on another process with Last-Event-ID
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level,
                timeout_graceful_shutdown=SHUTDOWN_GRACE, ssl_certfile=args.ssl_certfile,
                ssl_keyfile=args.ssl_keyfile)
    return 0


def demo(args: argparse.Namespace) -> int:
    from ..testing import demo as demo_command

    return demo_command.main(args)


def parser() -> argparse.ArgumentParser:
    from ..testing.demo import add_arguments as demo_arguments
    from ..workers.cli import keygen

    top = argparse.ArgumentParser(prog="leasegate", description="Background results that "
                                  "belong to the exact run that asked for them.")
    top.add_argument("--version", action="version", version=f"leasegate {version('leasegate')}")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, summary, add_arguments, handler in (
            ("serve", "the operator console and the runtime API (HTTP and SSE)",
             add_serve_arguments, serve),
            ("demo", "the OpenClaw #86490 story on real processes (embedded Redis, a Celery "
                     "worker, a beat)", demo_arguments, demo),
            ("keygen", "write an Ed25519 key pair: signing.pem (runtimes, 0600) and verify.pem "
                       "(workers)", keygen.add_arguments, keygen.main)):
        sub = commands.add_parser(name, help=summary, description=summary)
        add_arguments(sub)
        sub.set_defaults(handler=handler, parser=sub)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    return int(args.handler(args))
