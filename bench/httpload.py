"""Load from an async httpx client, for machines without wrk: `httpload.py URL BODY_FILE CONTENT_TYPE CONNECTIONS SECONDS [ACCEPT]`."""

import asyncio
import json
import sys
import time

import httpx


async def main(url, body_file, ctype, connections, seconds, accept=''):
    body, done, bad = open(body_file, 'rb').read(), 0, 0
    end = time.perf_counter() + seconds

    async def one(client):
        nonlocal done, bad
        while time.perf_counter() < end:
            r = await client.post(
                url, content=body, headers={'content-type': ctype, **({'accept': accept} if accept else {})}
            )
            done, bad = done + 1, bad + (r.status_code >= 300)

    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(limits=limits, timeout=10) as client:
        start = time.perf_counter()
        await asyncio.gather(*(one(client) for _ in range(connections)))
        took = time.perf_counter() - start
    if bad:
        sys.exit(f'{url} answered {bad} of {done} requests with an error status')
    print(json.dumps(dict(rps=done / took)))


if __name__ == '__main__':
    u, f, c, n, s, *a = sys.argv[1:]
    asyncio.run(main(u, f, c, int(n), float(s), *a))
