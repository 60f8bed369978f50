"""Per-document work shared by the Python peers, the same as graphs/sefaria.json does:
a section's text flattened (jagged arrays to lines, empty entries skipped), footnotes dropped
whole, tags stripped, entities decoded, then chunked (1000 characters, 100 overlap), embedded
through an OpenAI-compatible /v1/embeddings and written with one Elasticsearch _bulk request.
Written as the field reports' own designs would write it: plain Python, no native helpers."""
import html
import json
import re

FOOTNOTE = re.compile(r'<sup class="footnote-marker">.*?</sup>|<i class="footnote">(?:[^<]|<(?!/?i\b)[^>]*>|<i\b[^>]*>.*?</i>)*</i>', re.S)
TAG = re.compile(r"<[^>]+>")
SEPARATORS = ["\n\n", "\n", ". ", " ", ""]


def flatten(text):
    out = []

    def walk(v):
        if isinstance(v, list):
            for x in v:
                walk(x)
        elif isinstance(v, str) and v.strip():
            out.append(v)

    walk(text)
    return out


def clean(line):
    line = FOOTNOTE.sub("", line)
    line = TAG.sub("", line)
    return html.unescape(line).replace("\xa0", " ").strip()


def split(text, size, seps):
    if len(text) <= size:
        return [text]
    sep = next((s for s in seps if s == "" or s in text), "")
    parts = list(text) if sep == "" else text.split(sep)
    rest = seps[seps.index(sep) + 1:] if sep in seps else [""]
    out, cur = [], ""
    for i, p in enumerate(parts):
        piece = p + (sep if i < len(parts) - 1 else "")
        if len(piece) > size:
            if cur:
                out.append(cur)
                cur = ""
            out.extend(split(piece, size, rest))
        elif len(cur) + len(piece) > size:
            out.append(cur)
            cur = piece
        else:
            cur += piece
    if cur:
        out.append(cur)
    return out


def chunk(text, size=1000, overlap=100):
    pieces = split(text, size - overlap, SEPARATORS)
    chunks = []
    for i, p in enumerate(pieces):
        prev = pieces[i - 1][-overlap:] if i and overlap else ""
        chunks.append(prev + p)
    return chunks


def section_text(body):
    """The section's text and its next ref from a v3 texts response."""
    d = json.loads(body)
    versions = d.get("versions") or []
    lines = [clean(x) for x in flatten(versions[0].get("text")) if versions] if versions else []
    return "\n".join(x for x in lines if x), d.get("next")


def embed_body(chunks, model="text-embedding-3-small"):
    return json.dumps({"model": model, "input": chunks})


def vectors(body, n):
    data = json.loads(body)["data"]
    if len(data) != n:
        raise ValueError("embeddings: %d vectors for %d inputs" % (len(data), n))
    return [x["embedding"] for x in data]


def bulk_body(index, ref, book, chunks, vecs):
    lines = []
    for i, (c, v) in enumerate(zip(chunks, vecs)):
        lines.append(json.dumps({"index": {"_index": index, "_id": "%s#%d" % (ref, i)}}))
        lines.append(json.dumps({"doc_id": ref, "seq": i, "text": c, "meta": {"book": book}, "vector": v}))
    return "\n".join(lines) + "\n"


def books(index_json):
    """Book titles from /api/index, collections skipped (as the graph's tree walk does)."""
    out = []

    def walk(nodes):
        for n in nodes:
            if "contents" in n:
                walk(n["contents"])
            elif not n.get("isCollection") and "title" in n:
                out.append(n["title"])

    walk(json.loads(index_json))
    return out
