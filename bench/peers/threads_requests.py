"""Peer 1, the field report's first design: ThreadPoolExecutor(500) over books, each worker with
its own client (a requests.Session, as each TextIngester held one), walking its book section by
section: fetch the text, clean and chunk it, embed, _bulk.
Usage: threads_requests.py BASE_URL [--workers 500] [--books N]
Prints one JSON line: sections, seconds, cpu_s (this process)."""
import argparse
import concurrent.futures
import json
import resource
import threading
import time
import urllib.parse

import requests

import common

ap = argparse.ArgumentParser()
ap.add_argument("base")
ap.add_argument("--workers", type=int, default=500)
ap.add_argument("--books", type=int, default=0)
a = ap.parse_args()
local = threading.local()


def session():
    if not hasattr(local, "s"):
        local.s = requests.Session()
    return local.s


def get(path):
    for _ in range(8):
        r = session().get(a.base + path, timeout=60)
        if r.status_code < 500 and r.status_code != 429:
            return r
        time.sleep(0.2)
    r.raise_for_status()


def post(path, body, ctype):
    headers = {"Content-Type": ctype, "Authorization": "Bearer sim-key"}
    for _ in range(8):
        r = session().post(a.base + path, data=body.encode(), headers=headers, timeout=60)
        if r.status_code < 500 and r.status_code != 429:
            r.raise_for_status()
            return r
        time.sleep(0.2)
    r.raise_for_status()


def texts(ref):
    return get("/sefaria/api/v3/texts/" + urllib.parse.quote(ref) + "?version=english")


def ingest(book):
    r = texts(book)
    if r.status_code != 200:
        return 0
    ref = r.json().get("firstAvailableSectionRef")
    n = 0
    while ref:
        text, nxt = common.section_text(texts(ref).content)
        chunks = common.chunk(text) if text else []
        if chunks:
            vecs = common.vectors(post("/v1/embeddings", common.embed_body(chunks), "application/json").content, len(chunks))
            post("/_bulk", common.bulk_body("sefaria", ref, book, chunks, vecs), "application/x-ndjson")
        n += 1
        ref = nxt
    return n


t0 = time.monotonic()
titles = common.books(get("/sefaria/api/index").content)
if a.books:
    titles = titles[: a.books]
with concurrent.futures.ThreadPoolExecutor(max_workers=a.workers) as pool:
    sections = sum(pool.map(ingest, titles))
ru = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"peer": "threads(%d)+requests" % a.workers, "books": len(titles), "sections": sections,
                  "seconds": time.monotonic() - t0, "cpu_s": ru.ru_utime + ru.ru_stime}))
