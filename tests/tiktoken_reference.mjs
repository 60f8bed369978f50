// The reference tokenizer for tests/tokenizer_test.cpp: js-tiktoken (what scripts/setup installs
// into data/tokenizers). Usage: node tiktoken_reference.mjs RANKS_DIR ENCODING TEXTS.json
// TEXTS.json is a JSON array of strings; prints one line per text: '=' and its token ids,
// space-separated (encode_ordinary: special tokens' text is ordinary text).
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { join } from "node:path";

const [dir, encoding, textsPath] = process.argv.slice(2);
const lite = await import(pathToFileURL(join(dir, "..", "lite.js")).href);
const ranks = (await import(pathToFileURL(join(dir, `${encoding}.js`)).href)).default;
const enc = new lite.Tiktoken(ranks);
const texts = JSON.parse(readFileSync(textsPath, "utf8"));
const out = texts.map((t) => "=" + enc.encode(t, [], []).join(" "));
process.stdout.write(out.join("\n") + "\n");
