"""Peer 2, the field report's optimized design: P processes, each an asyncio loop with one
aiohttp session and at most 50 requests in flight (a semaphore), the books dealt out among the
processes; each book walked section by section: fetch the text, clean and chunk it, embed,
_bulk. Usage: procs_aiohttp.py BASE_URL [--processes 10] [--inflight 50] [--books N]
Prints one JSON line: sections, seconds, cpu_s (every process)."""
import argparse
import asyncio
import json
import multiprocessing
import resource
import time
import urllib.parse
import urllib.request

import aiohttp

import common


async def run(base, titles, inflight):
    sem = asyncio.Semaphore(inflight)
    conn = aiohttp.TCPConnector(limit=inflight)
    async with aiohttp.ClientSession(connector=conn) as s:

        async def call(method, path, body=None, ctype=None):
            headers = {"Authorization": "Bearer sim-key"}
            if ctype:
                headers["Content-Type"] = ctype
            for _ in range(8):
                async with sem:
                    async with s.request(method, base + path, data=body, headers=headers) as r:
                        data = await r.read()
                        if r.status < 500 and r.status != 429:
                            return r.status, data
                await asyncio.sleep(0.2)
            raise RuntimeError("%s %s: gave up" % (method, path))

        async def texts(ref):
            return await call("GET", "/sefaria/api/v3/texts/" + urllib.parse.quote(ref) + "?version=english")

        async def ingest(book):
            status, body = await texts(book)
            if status != 200:
                return 0
            ref = json.loads(body).get("firstAvailableSectionRef")
            n = 0
            while ref:
                _, body = await texts(ref)
                text, nxt = common.section_text(body)
                chunks = common.chunk(text) if text else []
                if chunks:
                    _, eb = await call("POST", "/v1/embeddings", common.embed_body(chunks).encode(), "application/json")
                    vecs = common.vectors(eb, len(chunks))
                    await call("POST", "/_bulk", common.bulk_body("sefaria", ref, book, chunks, vecs).encode(),
                               "application/x-ndjson")
                n += 1
                ref = nxt
            return n

        return sum(await asyncio.gather(*(ingest(b) for b in titles)))


def worker(args):
    base, titles, inflight = args
    return asyncio.run(run(base, titles, inflight))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("base")
    ap.add_argument("--processes", type=int, default=10)
    ap.add_argument("--inflight", type=int, default=50)
    ap.add_argument("--books", type=int, default=0)
    a = ap.parse_args()
    t0 = time.monotonic()
    with urllib.request.urlopen(a.base + "/sefaria/api/index") as r:
        titles = common.books(r.read())
    if a.books:
        titles = titles[: a.books]
    shares = [(a.base, titles[i :: a.processes], a.inflight) for i in range(a.processes)]
    with multiprocessing.Pool(a.processes) as pool:
        sections = sum(pool.map(worker, shares))
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    print(json.dumps({"peer": "%d procs x aiohttp(%d)" % (a.processes, a.inflight), "books": len(titles),
                      "sections": sections, "seconds": time.monotonic() - t0,
                      "cpu_s": me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime}))
