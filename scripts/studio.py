"""Watch runs, draw levels, try the student on them and send them into training, in a browser.

    python scripts/studio.py RUNS [--port 8765] [--host 127.0.0.1] [--token TOKEN]

RUNS is a run folder or a folder of run folders. The server listens on 127.0.0.1 unless
--host says otherwise; on any other host every write needs a token, generated and printed
when --token is not given (the printed URL carries it). Needs the studio extra:
pip install -e ".[studio]".
"""

from __future__ import annotations

import argparse
import secrets
import sys
from pathlib import Path

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", help="a run folder or a folder of run folders")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8765, help="port (0: any free one)")
    parser.add_argument("--token", default=None, help="token every write must carry")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    root = Path(args.runs)
    if not root.is_dir():
        print(f"studio: {root} is not a folder", file=sys.stderr)
        return 2
    token = args.token
    if token is None and args.host not in LOCAL_HOSTS:
        token = secrets.token_urlsafe(24)
    try:
        import uvicorn

        from ued.studio.app import create_app
    except ImportError as err:
        print(f'studio: {err}; install the extra: pip install -e ".[studio]"', file=sys.stderr)
        return 2
    app = create_app(root, token)
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning")
    server = uvicorn.Server(config)

    async def announce():
        # The port is known once the socket is bound (--port 0 picks a free one).
        port = args.port
        for s in server.servers:
            port = s.sockets[0].getsockname()[1]
        host = f"[{args.host}]" if ":" in args.host else args.host
        query = f"?token={token}" if token else ""
        print(f"[ued] studio on http://{host}:{port}/{query}", flush=True)

    import asyncio

    async def run():
        task = asyncio.create_task(server.serve())
        while not server.started and not task.done():
            await asyncio.sleep(0.05)
        if server.started:
            await announce()
        await task

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
