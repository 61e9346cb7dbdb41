// Open documents: text kept in a gap buffer with an incrementally updated
// line index, so an edit costs O(edit size + distance from the previous
// edit) and a position lookup costs O(log lines + line length).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "runtime/core/result.h"

namespace ghostd::server {

enum class PositionEncoding { kUtf16, kUtf8, kUtf32 };
const char* position_encoding_name(PositionEncoding e);

// A zero-based line and a column counted in the negotiated encoding's units.
struct TextPosition {
  int64_t line = 0;
  int64_t character = 0;
  bool operator==(const TextPosition&) const = default;
};

struct TextRange {
  TextPosition start;
  TextPosition end;
};

// One didChange entry: a range edit, or the whole text when `range` is empty.
struct TextChange {
  std::optional<TextRange> range;
  std::string text;
};

// Byte text with a movable gap and a line-start index whose entries past the
// gap are stored relative to the end of the text, so an edit at the gap
// shifts nothing. Lines end at '\n'; a '\r' before it belongs to the ending.
// Thread-safety: not thread-safe.
class GapText {
 public:
  GapText() = default;
  explicit GapText(std::string_view text) { replace(0, 0, text); }

  size_t size() const { return buf_.size() - (gap_end_ - gap_begin_); }
  char at(size_t i) const { return i < gap_begin_ ? buf_[i] : buf_[i + (gap_end_ - gap_begin_)]; }
  std::string substr(size_t pos, size_t len) const;
  std::string str() const { return substr(0, size()); }
  // Replaces [pos, pos + len) by `text`; arguments are clamped to the text.
  void replace(size_t pos, size_t len, std::string_view text);

  size_t line_count() const { return lines_.size() - (lgap_end_ - lgap_begin_); }
  size_t line_start(size_t line) const;
  // End of the line's content (before "\n" or "\r\n").
  size_t line_end(size_t line) const;
  // The line holding byte `offset` (offset <= size()).
  size_t line_of(size_t offset) const;

 private:
  void move_gap(size_t pos);
  void ensure_gap(size_t n);
  void move_line_gap(size_t index);
  void ensure_line_gap(size_t n);
  size_t count_starts_at_or_before(size_t offset) const;

  std::vector<char> buf_;
  size_t gap_begin_ = 0, gap_end_ = 0;
  std::vector<size_t> lines_{0};  // line 0 starts at 0; always present
  size_t lgap_begin_ = 1, lgap_end_ = 1;
};

// One open document. Thread-safety: not thread-safe.
class Document {
 public:
  Document(std::string uri, std::string language_id, int64_t version, std::string_view text);

  const std::string& uri() const { return uri_; }
  const std::string& language_id() const { return language_id_; }
  int64_t version() const { return version_; }
  // Bumped by every change; completions started at an older epoch are stale.
  uint64_t epoch() const { return epoch_; }
  uint64_t open_sequence() const { return open_sequence_; }
  const GapText& text() const { return text_; }

  // Clamps as the spec says: a line past the end means the end of the text,
  // a character past the line's end means the line's end; a column inside a
  // multi-unit character rounds down to its start.
  size_t offset_of(TextPosition p, PositionEncoding enc) const;
  TextPosition position_of(size_t offset, PositionEncoding enc) const;

  ghostd::runtime::Status apply(const TextChange& change, PositionEncoding enc);
  void set_version(int64_t v) { version_ = v; }
  void set_open_sequence(uint64_t s) { open_sequence_ = s; }

 private:
  std::string uri_;
  std::string language_id_;
  int64_t version_;
  uint64_t epoch_ = 0;
  uint64_t open_sequence_ = 0;
  GapText text_;
};

// All open documents of one session. Thread-safety: not thread-safe; owned
// by the session's executor.
class DocumentStore {
 public:
  // Replaces an already open document of the same URI (clients may reopen).
  Document& open(std::string uri, std::string language_id, int64_t version, std::string_view text);
  ghostd::runtime::Status change(const std::string& uri, int64_t version, const std::vector<TextChange>& changes,
                                 PositionEncoding enc);
  bool close(const std::string& uri);
  Document* find(const std::string& uri);
  const Document* find(const std::string& uri) const;
  // Open documents in opening order (a stable order for prompt context).
  std::vector<const Document*> in_open_order() const;
  size_t size() const { return docs_.size(); }

 private:
  std::unordered_map<std::string, std::unique_ptr<Document>> docs_;
  uint64_t next_sequence_ = 0;
};

}  // namespace ghostd::server
