#include "server/documents.h"

#include <algorithm>
#include <cstring>

#include "server/utf8.h"

namespace ghostd::server {

using ghostd::runtime::Error;
using ghostd::runtime::Status;

const char* position_encoding_name(PositionEncoding e) {
  switch (e) {
    case PositionEncoding::kUtf8: return "utf-8";
    case PositionEncoding::kUtf16: return "utf-16";
    case PositionEncoding::kUtf32: return "utf-32";
  }
  return "utf-16";
}

// ---- GapText ----------------------------------------------------------------

std::string GapText::substr(size_t pos, size_t len) const {
  pos = std::min(pos, size());
  len = std::min(len, size() - pos);
  std::string out;
  out.reserve(len);
  size_t end = pos + len;
  if (pos < gap_begin_) out.append(buf_.data() + pos, std::min(end, gap_begin_) - pos);
  if (end > gap_begin_) {
    size_t from = std::max(pos, gap_begin_);
    size_t gap = gap_end_ - gap_begin_;
    out.append(buf_.data() + from + gap, end - from);
  }
  return out;
}

void GapText::move_gap(size_t pos) {
  if (pos < gap_begin_) {
    size_t n = gap_begin_ - pos;
    std::memmove(buf_.data() + gap_end_ - n, buf_.data() + pos, n);
    gap_begin_ -= n;
    gap_end_ -= n;
  } else if (pos > gap_begin_) {
    size_t n = pos - gap_begin_;
    std::memmove(buf_.data() + gap_begin_, buf_.data() + gap_end_, n);
    gap_begin_ += n;
    gap_end_ += n;
  }
}

void GapText::ensure_gap(size_t n) {
  if (gap_end_ - gap_begin_ >= n) return;
  size_t tail = buf_.size() - gap_end_;
  size_t new_size = std::max(buf_.size() * 2, size() + n + 64);
  std::vector<char> grown(new_size);
  if (gap_begin_ > 0) std::memcpy(grown.data(), buf_.data(), gap_begin_);
  if (tail > 0) std::memcpy(grown.data() + new_size - tail, buf_.data() + gap_end_, tail);
  buf_ = std::move(grown);
  gap_end_ = new_size - tail;
}

size_t GapText::line_start(size_t line) const {
  return line < lgap_begin_ ? lines_[line] : size() - lines_[line + (lgap_end_ - lgap_begin_)];
}

size_t GapText::line_end(size_t line) const {
  size_t end = line + 1 < line_count() ? line_start(line + 1) - 1 : size();
  if (end > line_start(line) && at(end - 1) == '\r' && end < size()) --end;
  return end;
}

size_t GapText::count_starts_at_or_before(size_t offset) const {
  size_t lo = 0, hi = line_count();
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (line_start(mid) <= offset) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo;
}

size_t GapText::line_of(size_t offset) const { return count_starts_at_or_before(offset) - 1; }

void GapText::move_line_gap(size_t index) {
  size_t text_size = size();
  while (lgap_begin_ > index) {  // entries cross to the end-relative side
    --lgap_begin_;
    --lgap_end_;
    lines_[lgap_end_] = text_size - lines_[lgap_begin_];
  }
  while (lgap_begin_ < index) {
    lines_[lgap_begin_] = text_size - lines_[lgap_end_];
    ++lgap_begin_;
    ++lgap_end_;
  }
}

void GapText::ensure_line_gap(size_t n) {
  if (lgap_end_ - lgap_begin_ >= n) return;
  size_t tail = lines_.size() - lgap_end_;
  size_t new_size = std::max(lines_.size() * 2, line_count() + n + 16);
  std::vector<size_t> grown(new_size);
  std::copy(lines_.begin(), lines_.begin() + static_cast<ptrdiff_t>(lgap_begin_), grown.begin());
  std::copy(lines_.begin() + static_cast<ptrdiff_t>(lgap_end_), lines_.end(),
            grown.begin() + static_cast<ptrdiff_t>(new_size - tail));
  lines_ = std::move(grown);
  lgap_end_ = new_size - tail;
}

void GapText::replace(size_t pos, size_t len, std::string_view text) {
  pos = std::min(pos, size());
  len = std::min(len, size() - pos);
  size_t end = pos + len;
  // Line starts in (pos, end] lose their '\n'; the rest keep their value.
  size_t keep = count_starts_at_or_before(pos);
  size_t removed_to = count_starts_at_or_before(end);
  move_line_gap(keep);
  lgap_end_ += removed_to - keep;

  move_gap(pos);
  gap_end_ += len;
  ensure_gap(text.size());
  if (!text.empty()) std::memcpy(buf_.data() + gap_begin_, text.data(), text.size());
  gap_begin_ += text.size();

  size_t newlines = static_cast<size_t>(std::count(text.begin(), text.end(), '\n'));
  ensure_line_gap(newlines);
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\n') lines_[lgap_begin_++] = pos + i + 1;
  }
}

// ---- Document ---------------------------------------------------------------

namespace {

// Code units of one code point whose UTF-8 sequence is `len` bytes long.
int64_t units_of(size_t len, PositionEncoding enc) {
  switch (enc) {
    case PositionEncoding::kUtf8: return static_cast<int64_t>(len);
    case PositionEncoding::kUtf16: return len == 4 ? 2 : 1;
    case PositionEncoding::kUtf32: return 1;
  }
  return 1;
}

}  // namespace

Document::Document(std::string uri, std::string language_id, int64_t version, std::string_view text)
    : uri_(std::move(uri)), language_id_(std::move(language_id)), version_(version), text_(sanitize_utf8(text)) {}

size_t Document::offset_of(TextPosition p, PositionEncoding enc) const {
  if (p.line < 0) return 0;
  if (static_cast<size_t>(p.line) >= text_.line_count()) return text_.size();
  size_t line = static_cast<size_t>(p.line);
  size_t off = text_.line_start(line);
  size_t end = text_.line_end(line);
  int64_t units = 0;
  while (off < end) {
    size_t len = utf8_sequence_length(static_cast<unsigned char>(text_.at(off)));
    int64_t u = units_of(len, enc);
    if (units + u > p.character) break;  // inside or past the target
    units += u;
    off = std::min(off + len, end);
  }
  return off;
}

TextPosition Document::position_of(size_t offset, PositionEncoding enc) const {
  offset = std::min(offset, text_.size());
  size_t line = text_.line_of(offset);
  size_t off = text_.line_start(line);
  int64_t units = 0;
  while (off < offset) {
    size_t len = utf8_sequence_length(static_cast<unsigned char>(text_.at(off)));
    units += units_of(len, enc);
    off += len;
  }
  return {static_cast<int64_t>(line), units};
}

Status Document::apply(const TextChange& change, PositionEncoding enc) {
  std::string text = is_valid_utf8(change.text) ? change.text : sanitize_utf8(change.text);
  ++epoch_;
  if (!change.range) {
    text_ = GapText(text);
    return {};
  }
  size_t a = offset_of(change.range->start, enc);
  size_t b = offset_of(change.range->end, enc);
  if (b < a) return Error{uri_ + ": change range end precedes its start"};
  text_.replace(a, b - a, text);
  return {};
}

// ---- DocumentStore ----------------------------------------------------------

Document& DocumentStore::open(std::string uri, std::string language_id, int64_t version, std::string_view text) {
  auto doc = std::make_unique<Document>(uri, std::move(language_id), version, text);
  doc->set_open_sequence(next_sequence_++);
  auto& slot = docs_[std::move(uri)];
  slot = std::move(doc);
  return *slot;
}

Status DocumentStore::change(const std::string& uri, int64_t version, const std::vector<TextChange>& changes,
                             PositionEncoding enc) {
  Document* doc = find(uri);
  if (!doc) return Error{"didChange for a document that is not open: " + uri};
  for (const auto& c : changes) {
    Status s = doc->apply(c, enc);
    if (!s.ok()) return s;
  }
  doc->set_version(version);
  return {};
}

bool DocumentStore::close(const std::string& uri) { return docs_.erase(uri) > 0; }

Document* DocumentStore::find(const std::string& uri) {
  auto it = docs_.find(uri);
  return it == docs_.end() ? nullptr : it->second.get();
}

const Document* DocumentStore::find(const std::string& uri) const {
  auto it = docs_.find(uri);
  return it == docs_.end() ? nullptr : it->second.get();
}

std::vector<const Document*> DocumentStore::in_open_order() const {
  std::vector<const Document*> out;
  out.reserve(docs_.size());
  for (const auto& [_, d] : docs_) out.push_back(d.get());
  std::sort(out.begin(), out.end(),
            [](const Document* a, const Document* b) { return a->open_sequence() < b->open_sequence(); });
  return out;
}

}  // namespace ghostd::server
