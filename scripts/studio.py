"""Watch runs, draw levels, try the student on them and send them into training, in a browser.

    python scripts/studio.py RUNS [--port 8765] [--host 127.0.0.1] [--token TOKEN]
        [--allow-host NAME ...]

RUNS is a run folder or a folder of run folders. The server listens on 127.0.0.1 unless
--host says otherwise. It answers only requests addressed to the names it listens on (the
loopback names on loopback; --allow-host adds one, e.g. the machine's name when listening
on 0.0.0.0 behind it), so a web page on another name cannot reach it. Off loopback every
request, reads included, needs a token of at least 16 characters: generated and printed
in the URL when --token is not given; an empty or shorter --token is refused. Needs the
studio extra: pip install -e ".[studio]".

Exit codes: 0 stopped (Ctrl-C); 2 bad arguments, a port in use or an address this machine
does not have.
"""

from __future__ import annotations

import argparse
import errno
import secrets
import socket
import sys
from pathlib import Path

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
WILDCARDS = ("0.0.0.0", "::", "")
MIN_TOKEN = 16  # ued.studio.app.MIN_TOKEN (not imported: --help needs no Starlette)


def is_loopback(host: str) -> bool:
    """Only the usual loopback names count (any other address needs a token: never less
    safe)."""
    return host in LOCAL_HOSTS


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", help="a run folder or a folder of run folders")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8765, help="port (0: any free one)")
    parser.add_argument("--token", default=None, help="token every request must carry")
    parser.add_argument(
        "--allow-host", action="append", default=[], metavar="NAME",
        help="another name requests may address the server by (repeatable)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be in [0, 65535] (0: any free port), got {args.port}")
    args.host = args.host.strip("[]")
    if args.token is not None and not is_loopback(args.host) and len(args.token) < MIN_TOKEN:
        parser.error(
            f"--token must be at least {MIN_TOKEN} characters on {args.host or 'every address'}"
            " (off loopback every request carries it); leave it out to have one generated"
        )
    return args


def listen(host: str, port: int) -> socket.socket:
    """A bound socket for ``host:port``; OSError with a one-line reason otherwise."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)  # fmt: skip
    except socket.gaierror as err:
        raise OSError(f"cannot listen on {host!r}: {err.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as err:
        sock.close()
        if err.errno == errno.EADDRINUSE:
            raise OSError(
                f"port {port} on {host} is in use (another studio?); choose another --port, "
                "or --port 0 for any free one"
            ) from None
        raise OSError(f"cannot listen on {host} port {port}: {err.strerror}") from None
    return sock


def main(argv: list[str]) -> int:
    args = parse(argv)
    root = Path(args.runs)
    if not root.is_dir():
        print(f"studio: {root} is not a folder", file=sys.stderr)
        return 2
    local = is_loopback(args.host)
    token = args.token or None if local else args.token  # on loopback '' means no token
    if token is None and not local:
        token = secrets.token_urlsafe(24)
    if args.host in WILDCARDS:
        hosts = ["*"]
    else:
        hosts = [args.host, *(LOCAL_HOSTS if local else ()), *args.allow_host]
    try:
        import uvicorn

        from ued.studio.app import create_app
    except ImportError as err:
        print(f'studio: {err}; install the extra: pip install -e ".[studio]"', file=sys.stderr)
        return 2
    try:
        app = create_app(root, token, hosts)
        sock = listen(args.host, args.port)
    except (ValueError, OSError) as err:
        print(f"studio: {err}", file=sys.stderr)
        return 2
    config = uvicorn.Config(app, log_level="warning")
    server = uvicorn.Server(config)
    port = sock.getsockname()[1]
    shown = "127.0.0.1" if args.host in WILDCARDS else args.host
    host = f"[{shown}]" if ":" in shown else shown
    query = f"?token={token}" if token else ""
    url = f"http://{host}:{port}/{query}"

    import asyncio

    async def run():
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.05)
        if server.started:
            print(f"[ued] studio on {url}", flush=True)
            if args.host in WILDCARDS:
                print(f"[ued] listening on every address of this machine (port {port}); "
                      "every request needs the token", flush=True)  # fmt: skip
        await task

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
