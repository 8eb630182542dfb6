"""The CPU time a request of the app's own ASGI middleware, alone: `python bench/middleware.py [--loop asyncio]`.

An endpoint that reads a 16 kB body and answers is called directly (no sockets, no FastAPI), bare and wrapped in each
of BodyLimit (B), Guard (G), PagePolicy (P), Observe (O) and in all of them as `create_app` stacks them; blocks of
requests alternate between the variants and the best block of each counts (CPU time of this process: other work on
the cores barely changes it). Run it with another tree first on PYTHONPATH to compare (a tree without PagePolicy
measures P as bare)."""

from __future__ import annotations

import argparse
import asyncio
import time

BODY = b'x' * 16512  # 256 images of .npy counts


async def endpoint(scope, receive, send):
    "Reads the whole body and answers 200, as /predict does around its model."
    more = True
    while more:
        more = (await receive()).get('more_body', False)
    await send({'type': 'http.response.start', 'status': 200, 'headers': [(b'content-length', b'2')]})
    await send({'type': 'http.response.body', 'body': b'{}'})


def stack(layers: str):
    "`endpoint` wrapped in `layers`, innermost first, as create_app wraps the routes."
    from deploy.limits import BodyLimit, Guard
    from deploy.observe import Metrics, Observe

    try:
        from deploy.policy import PagePolicy
    except ImportError:  # a tree that predates it
        PagePolicy = None
    app = endpoint
    for layer in layers:
        if layer == 'B':
            app = BodyLimit(app, max_bytes=50_000_000)
        elif layer == 'G':
            app = Guard(app, max_concurrent=64, body_timeout=10)
        elif layer == 'P' and PagePolicy is not None:
            app = PagePolicy(app)
        elif layer == 'O':
            app = Observe(app, Metrics())
    return app


async def requests(app, n: int):
    headers = [(b'host', b'x'), (b'content-type', b'application/x-npy'), (b'content-length', b'%d' % len(BODY))]

    async def send(message):
        pass

    for _ in range(n):
        given = False

        async def receive():
            nonlocal given
            if given:
                await asyncio.sleep(3600)  # no disconnect: the client stays
            given = True
            return {'type': 'http.request', 'body': BODY, 'more_body': False}

        scope = {'type': 'http', 'method': 'POST', 'path': '/predict', 'headers': headers, 'state': {}}
        scope['client'] = ('127.0.0.1', 1)
        await app(scope, receive, send)


async def measure(variants: list[str], n: int, blocks: int) -> dict:
    apps = {v: stack(v.replace('-', '')) for v in variants}
    best = dict.fromkeys(apps, float('inf'))
    for _ in range(blocks):
        for v, app in apps.items():
            t = time.process_time()
            await requests(app, n)
            best[v] = min(best[v], (time.process_time() - t) / n * 1e6)
    return best


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        '--loop', choices=('uvloop', 'asyncio'), default='uvloop', help="the event loop (uvicorn's: uvloop)"
    )
    ap.add_argument('--requests', type=int, default=5000, help='requests a block')
    ap.add_argument('--blocks', type=int, default=7, help='blocks of each variant, alternating')
    args = ap.parse_args(argv)
    variants = ['-', 'B', 'G', 'P', 'O', 'BGPO']
    run = measure(variants, args.requests, args.blocks)
    if args.loop == 'uvloop':
        import uvloop

        best = uvloop.run(run)
    else:
        best = asyncio.run(run)
    names = {
        '-': 'bare endpoint',
        'B': 'BodyLimit',
        'G': 'Guard',
        'P': 'PagePolicy',
        'O': 'Observe',
        'BGPO': 'all four',
    }
    for v, us in best.items():
        print(f'{names[v]:<14} {us:6.2f} us a request  (+{us - best["-"]:5.2f} us over the bare endpoint)')


if __name__ == '__main__':
    main()
