// Text algorithms used by the chunking, cleaning and sharding nodes: UTF-8 helpers, a recursive
// character splitter, a sentence splitter, an HTML-to-text converter and a stable 64-bit hash
// (utf8.cpp, split.cpp, html.cpp, hash.cpp beside this header).
// Thread-safety: every function here is pure (no globals written, no hidden state) and safe to call
// from any number of threads at once; none blocks, none throws except std::bad_alloc.
// Byte offsets are into the caller's input; sizes of chunks are counted in code points (UTF-8 lead
// bytes). Invalid UTF-8 never crashes or loops, it only weakens the "never splits a code point"
// guarantee to "never splits a well-formed code point".
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::text {

struct Span {
  size_t begin = 0;  // byte offset, inclusive
  size_t end = 0;    // byte offset, exclusive
  friend bool operator==(const Span&, const Span&) = default;
};

// ---- UTF-8 -------------------------------------------------------------------------------------

// Number of bytes that are not continuation bytes (10xxxxxx): the code point count for valid UTF-8.
size_t count_code_points(std::string_view s);
// The value of a hex digit (0-9, a-f, A-F), or -1.
int hex_value(unsigned char c);
// Appends code point cp (at most U+10FFFF, not a surrogate) as UTF-8.
void append_utf8(std::string& out, uint32_t cp);
// Strict UTF-8 (RFC 3629): rejects overlongs, surrogates, values above U+10FFFF, truncation.
bool is_valid_utf8(std::string_view s);
// Copy of s with each maximal invalid subpart (Unicode "substitution of maximal subparts") replaced
// by U+FFFD. Valid input is returned unchanged.
std::string sanitize_utf8(std::string_view s);
// Byte offset after n code points starting at pos; clamped to s.size() (pos itself too).
size_t advance_code_points(std::string_view s, size_t pos, size_t n);
// True when pos == s.size() or s[pos] is not a continuation byte. False for pos > s.size().
bool is_boundary(std::string_view s, size_t pos);

// ---- Splitters ---------------------------------------------------------------------------------

// {"\n\n", "\n", ". ", " ", ""}.
const std::vector<std::string>& default_separators();

// Recursive character splitter (LangChain-like). size and overlap are in code points; size 0 is
// treated as 1 and overlap is clamped to size - 1.
// The first separator (in list order) that occurs in the text splits it into pieces; each separator
// stays attached to the END of the piece before it. Pieces are merged greedily while the merged
// span stays <= size; a piece longer than size flushes the current chunk and is split again with
// the separators after the chosen one (its last sub-chunk stays open, so short pieces after it,
// such as the second '\n' of a blank line, merge into it rather than standing alone). "" splits
// between code points; when the list runs out without
// "", code points are used anyway, so every span is <= size whatever the list.
// overlap == 0: spans are contiguous, cover the whole input in order, hold 1..size code points each
// and (for valid UTF-8) never split a code point. Empty input -> no spans.
// overlap > 0: span k > 0 also starts up to `overlap` code points earlier, inside span k-1's own
// (non-overlapped) part but never at its start, so starts strictly increase; the total stays <=
// size (overlap shrinks if needed) and the start is a code point boundary, moved forward to just
// after a whitespace inside the overlap window when there is one (no chunk starts mid-word
// needlessly).
std::vector<Span>
split_recursive(std::string_view text, size_t size, size_t overlap,
                const std::vector<std::string>& separators = default_separators());

// Sentence splitter. A sentence ends after '.', '!' or '?' (optionally followed by closing quotes
// or brackets: " ' ) ] } ” ’ ») followed by whitespace, the whitespace run included; or after a
// blank line (newline, optional spaces/tabs/CR, newline, and the rest of that whitespace run).
// Whole sentences are grouped greedily up to size code points; a sentence longer than size is split
// with split_recursive(sentence, size, 0) into chunks of its own. overlap == 0: same contiguity,
// 1..size and code point guarantees as split_recursive. overlap > 0: a chunk starts with the
// trailing whole sentences of the previous chunk whose total is <= overlap code points, fewer if
// needed to stay
// <= size, never the whole previous chunk (starts strictly increase); no overlap into or out of the
// pieces of an over-long sentence.
std::vector<Span> split_sentences(std::string_view text, size_t size, size_t overlap);

// Structure-aware splitter for Markdown, and for the text extract.* nodes make (``` fences,
// "a | b" table rows). The text is read as blocks: fenced code (``` or ~~~, to its closing fence
// or the end), ATX headings (# .. ######), tables (two or more lines with '|'), and paragraphs
// (lines up to a blank line; a list is one). Each heading begins a chunk and sets the heading path
// ("Install > From source") of the chunks after it; blocks are packed whole, joined by what
// separates them, while a chunk stays <= size code points, so a fence or table that fits in a
// chunk is never split; a longer block is split on its own (code and tables between lines, prose
// as split_recursive). Spans are trimmed: none begins or ends with whitespace or a dangling
// separator, and blank lines between chunks belong to none. A chunk that would hold only a
// heading (nothing before the next one) is left out. overlap > 0: a chunk after a paragraph in the
// same section starts with that paragraph's last words, up to `overlap` code points, at a word's
// start, when the chunk still fits in size; starts strictly increase.
struct MarkdownSpan {
  Span span;
  std::string heading;  // heading path at the chunk, "" before the first heading
};
std::vector<MarkdownSpan> split_markdown(std::string_view text, size_t size, size_t overlap);

// ---- HTML --------------------------------------------------------------------------------------

// HTML to plain text in linear time; never crashes or loops on malformed input.
// Drops tags and comments; drops <script>, <style> (raw content up to the closing tag) and <head>
// (up to </head> or <body>) with their content; drops any element whose class list contains
// "footnote" or "footnote-marker" together with all its content, counting nested same-name tags.
// An unclosed dropped element drops the rest of the document, an unclosed tag likewise (as
// browsers). <br> and </p> </div> </li> </h1>..</h6> </tr> become a newline; </td> </th> a space.
// Entities are decoded as by decode_entities. Runs of spaces/tabs collapse to one space, spaces
// around newlines are trimmed, at most two consecutive newlines, both ends trimmed. Source newlines
// are kept (then collapsed as above). A '<' not followed by a letter, '/'+letter, '!' or '?' is
// text.
std::string html_to_text(std::string_view html);

// Decodes named entities (amp lt gt quot apos nbsp thinsp ensp emsp ndash mdash lsquo rsquo ldquo
// rdquo hellip copy reg shy zwj zwnj lrm rlm, plus a few common others), &#NNN; and &#xHH;. The ';'
// is required; unknown names, missing ';', code points 0, surrogates or above U+10FFFF are left as
// written. &nbsp; / &thinsp; become the real U+00A0 / U+2009.
std::string decode_entities(std::string_view s);

// ---- Hashing -----------------------------------------------------------------------------------

// Stable 64-bit hash (wyhash-style 64x64->128 multiply-fold mixing). The value depends only on the
// bytes and the seed: identical on every machine, compiler, endianness and run. Used for sharding
// and dedup, so the algorithm must never change; tests pin known values.
uint64_t stable_hash64(std::string_view s, uint64_t seed = 0);

}  // namespace sluice::text
