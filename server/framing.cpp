#include "server/framing.h"

#include <algorithm>
#include <cctype>
#include <charconv>

namespace ghostd::server {
namespace {

constexpr std::string_view kLengthHeader = "content-length";

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

// True when the buffered header block ends with an empty line (CRLF or bare LF).
bool ends_with_blank_line(std::string_view s) {
  return s.ends_with("\n\n") || s.ends_with("\n\r\n");
}

// Offset of the next "Content-Length" (any case), or npos. A body sent without
// a length runs straight into the next header, so no line start is required.
size_t find_resync_point(std::string_view s, size_t from) {
  for (size_t i = from; i + kLengthHeader.size() <= s.size(); ++i) {
    if (iequals(s.substr(i, kLengthHeader.size()), kLengthHeader)) return i;
  }
  return std::string_view::npos;
}

}  // namespace

bool FrameDecoder::parse_headers(std::string_view block, size_t& length, std::string& error) const {
  bool have_length = false;
  while (!block.empty()) {
    size_t nl = block.find('\n');
    std::string_view line = block.substr(0, nl);
    block = nl == std::string_view::npos ? std::string_view() : block.substr(nl + 1);
    line = trim(line);
    if (line.empty()) continue;
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) {
      error = "malformed header line (expected 'Name: value')";
      return false;
    }
    std::string_view name = trim(line.substr(0, colon));
    std::string_view value = trim(line.substr(colon + 1));
    if (iequals(name, kLengthHeader)) {
      size_t v = 0;
      auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
      if (ec != std::errc() || ptr != value.data() + value.size() || value.empty()) {
        error = "Content-Length is not a non-negative integer";
        return false;
      }
      length = v;
      have_length = true;
    }
    // Content-Type and unknown headers are accepted and ignored (utf-8 is the only charset).
  }
  if (!have_length) {
    error = "header block has no Content-Length";
    return false;
  }
  return true;
}

void FrameDecoder::feed(std::string_view data, std::vector<Frame>& out) {
  std::string carry;
  while (!data.empty()) {
    switch (state_) {
      case State::kSkipBody: {
        size_t n = std::min(skip_left_, data.size());
        skip_left_ -= n;
        data.remove_prefix(n);
        if (skip_left_ == 0) state_ = State::kHeader;
        break;
      }
      case State::kBody: {
        size_t n = std::min(body_length_ - buffer_.size(), data.size());
        buffer_.append(data.substr(0, n));
        data.remove_prefix(n);
        if (buffer_.size() == body_length_) {
          out.push_back({Frame::Kind::kMessage, std::move(buffer_), {}});
          buffer_.clear();
          state_ = State::kHeader;
        }
        break;
      }
      case State::kResync: {
        // Keep a tail that may hold the start of "Content-Length" split across reads.
        buffer_.append(data);
        data = {};
        size_t at = find_resync_point(buffer_, 0);
        if (at == std::string::npos) {
          size_t keep = std::min(buffer_.size(), kLengthHeader.size());
          buffer_.erase(0, buffer_.size() - keep);
          return;
        }
        buffer_.erase(0, at);
        state_ = State::kHeader;
        // The rest goes back through the header parser (rare path, so one copy is fine).
        carry = std::move(buffer_);
        buffer_.clear();
        data = carry;
        break;
      }
      case State::kHeader: {
        // Consume one header line at a time so nothing past the header block is copied twice.
        size_t nl = data.find('\n');
        size_t n = nl == std::string_view::npos ? data.size() : nl + 1;
        if (buffer_.empty() && (data.substr(0, n) == "\r\n" || data.substr(0, n) == "\n")) {
          data.remove_prefix(n);  // stray blank line between messages
          break;
        }
        buffer_.append(data.substr(0, n));
        data.remove_prefix(n);
        if (buffer_.size() > kMaxHeaderBytes) {
          out.push_back({Frame::Kind::kBadHeader, {}, "header block longer than 8192 bytes"});
          state_ = State::kResync;
          buffer_.erase(0, 1);
          break;
        }
        if (nl == std::string_view::npos) return;
        if (!ends_with_blank_line(buffer_)) break;
        size_t length = 0;
        std::string error;
        bool ok = parse_headers(buffer_, length, error);
        buffer_.clear();
        if (!ok) {
          out.push_back({Frame::Kind::kBadHeader, {}, error});
          state_ = State::kResync;
        } else if (length > max_message_bytes_) {
          out.push_back({Frame::Kind::kTooLarge, {},
                         "message of " + std::to_string(length) + " bytes exceeds the limit of " +
                             std::to_string(max_message_bytes_) + " bytes"});
          state_ = State::kSkipBody;
          skip_left_ = length;
        } else if (length == 0) {
          out.push_back({Frame::Kind::kMessage, {}, {}});
        } else {
          state_ = State::kBody;
          body_length_ = length;
          buffer_.reserve(length);
        }
        break;
      }
    }
  }
}

std::string encode_frame(std::string_view body) {
  std::string out = "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n";
  out.append(body);
  return out;
}

}  // namespace ghostd::server
