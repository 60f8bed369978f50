// HTTP/1.1 on the sim's connections: parsing pipelined requests (with their size caps) and
// queueing responses in request order.
#include "sim/server_impl.hpp"

namespace sluice::sim {

void SimServer::Impl::parse_requests(Conn& c) {
  while (!c.parse_done && !c.stalled && !c.draining) {
    if (c.slots.size() >= kMaxPendingPerConn || c.out.size() - c.out_off >= kMaxOutPerConn) {
      c.read_paused = true;
      break;
    }
    Request req;
    ParseResult r = parse_one(c, req);
    if (r != ParseResult::ok) break;
    dispatch(c, req);
  }
  if (c.in_off > 0) {
    c.in.erase(0, c.in_off);
    c.in_off = 0;
  }
  if (c.in.empty() && c.in.capacity() > (size_t{1} << 20)) std::string().swap(c.in);
}

void SimServer::Impl::protocol_error(Conn& c, int status, std::string_view msg) {
  {
    std::lock_guard lk(stats_mu);
    ++stats.requests;
    ++stats.eps[kOther].requests;
    stats.eps[kOther].count_status(status);
  }
  body.clear();
  body.append("{\"error\":");
  json::append_quoted(body, msg);
  body.push_back('}');
  c.parse_done = true;
  c.close_after = true;
  enqueue(c, SlotKind::respond, status, false, true, body, 0);
}

ParseResult SimServer::Impl::parse_one(Conn& c, Request& req) {
  std::string_view in = std::string_view(c.in).substr(c.in_off);
  // Tolerate stray CRLFs between requests (RFC 9112 2.2).
  size_t skip = 0;
  while (skip < in.size() && (in[skip] == '\r' || in[skip] == '\n')) ++skip;
  if (skip) {
    c.in_off += skip;
    in.remove_prefix(skip);
  }
  if (in.empty()) return ParseResult::need_more;
  size_t head_end = in.find("\r\n\r\n");
  if (head_end == std::string_view::npos) {
    if (in.size() > kMaxHeaderBytes) {
      protocol_error(c, 431, "request head too large");
      return ParseResult::error;
    }
    return ParseResult::need_more;
  }
  std::string_view head = in.substr(0, head_end);
  size_t line_end = head.find("\r\n");
  std::string_view line = head.substr(0, line_end);
  size_t sp1 = line.find(' ');
  size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos) {
    protocol_error(c, 400, "bad request line");
    return ParseResult::error;
  }
  req.method = line.substr(0, sp1);
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string_view version = line.substr(sp2 + 1);
  bool http11 = version == "HTTP/1.1";
  if (!http11 && version != "HTTP/1.0") {
    protocol_error(c, 400, "unsupported HTTP version");
    return ParseResult::error;
  }
  req.keep_alive = http11;
  size_t q = target.find('?');
  req.path = target.substr(0, q);
  req.query = q == std::string_view::npos ? std::string_view{} : target.substr(q + 1);

  uint64_t content_length = 0;
  bool expect_continue = false;
  std::string_view rest =
      line_end == std::string_view::npos ? std::string_view{} : head.substr(line_end + 2);
  while (!rest.empty()) {
    size_t e = rest.find("\r\n");
    std::string_view h = rest.substr(0, e);
    rest = e == std::string_view::npos ? std::string_view{} : rest.substr(e + 2);
    size_t colon = h.find(':');
    if (colon == std::string_view::npos) continue;
    std::string_view name = h.substr(0, colon);
    std::string_view value = trim(h.substr(colon + 1));
    if (iequals(name, "content-length")) {
      if (!parse_u64(value, content_length)) {
        protocol_error(c, 400, "bad Content-Length");
        return ParseResult::error;
      }
    } else if (iequals(name, "transfer-encoding")) {
      if (!iequals(value, "identity")) {
        protocol_error(c, 501, "chunked request bodies are not supported");
        return ParseResult::error;
      }
    } else if (iequals(name, "connection")) {
      if (icontains(value, "close")) req.keep_alive = false;
      else if (icontains(value, "keep-alive")) req.keep_alive = true;
    } else if (iequals(name, "x-goog-api-key")) {
      req.goog_api_key = value;
      req.has_goog_api_key = true;
    } else if (iequals(name, "expect")) {
      expect_continue = iequals(value, "100-continue");
    }
  }
  size_t head_len = head_end + 4;
  if (content_length > kMaxRequestBytes || head_len + content_length > kMaxRequestBytes) {
    protocol_error(c, 413, "request too large");
    return ParseResult::error;
  }
  if (in.size() < head_len + content_length) {
    if (expect_continue && !c.continue_sent && c.slots.empty() && c.out_off >= c.out.size()) {
      c.out.append("HTTP/1.1 100 Continue\r\n\r\n");
      c.continue_sent = true;
    }
    return ParseResult::need_more;
  }
  req.body = in.substr(head_len, size_t(content_length));
  c.in_off += head_len + size_t(content_length);
  c.continue_sent = false;
  return ParseResult::ok;
}

void SimServer::Impl::append_head(std::string& out, int status, bool retry_after, bool close,
                                  size_t len) {
  out.append("HTTP/1.1 ");
  append_int(out, status);
  out.push_back(' ');
  out.append(reason(status));
  out.append("\r\nContent-Type: application/json\r\nContent-Length: ");
  append_uint(out, len);
  out.append("\r\n");
  if (retry_after) out.append("Retry-After: 1\r\n");
  if (close) out.append("Connection: close\r\n");
  out.append("\r\n");
}

void SimServer::Impl::enqueue(Conn& c, SlotKind kind, int status, bool retry_after, bool close,
                              std::string_view b, int64_t delay_ns) {
  {
    std::lock_guard lk(stats_mu);
    ++stats.in_flight;
    stats.peak = std::max(stats.peak, stats.in_flight);
    if (kind == SlotKind::respond && delay_ns <= 0 && c.slots.empty()) --stats.in_flight;
  }
  if (close) {
    c.close_after = true;
    c.parse_done = true;
  }
  if (kind == SlotKind::respond && delay_ns <= 0 && c.slots.empty()) {
    if (c.out_off >= c.out.size()) {
      c.out.clear();
      c.out_off = 0;
    }
    append_head(c.out, status, retry_after, close, b.size());
    c.out.append(b);
    return;
  }
  Slot s;
  s.seq = c.next_seq++;
  s.kind = kind;
  s.ready = delay_ns <= 0;
  if (kind == SlotKind::respond) {
    s.data.reserve(b.size() + 128);
    append_head(s.data, status, retry_after, close, b.size());
    s.data.append(b);
  }
  if (!s.ready) timers.push(Timer{now_ns + delay_ns, c.id, c.fd, s.seq});
  c.slots.push_back(std::move(s));
}

void SimServer::Impl::error_body(std::string_view msg) {
  body.clear();
  body.append("{\"error\":");
  json::append_quoted(body, msg);
  body.push_back('}');
}

void SimServer::Impl::finish(Conn& c, Ep ep, SlotKind kind, int status, bool retry_after,
                             bool close, int64_t delay) {
  {
    std::lock_guard lk(stats_mu);
    stats.eps[ep].count_status(status);
  }
  enqueue(c, kind, status, retry_after, close, body, delay);
}

}  // namespace sluice::sim
