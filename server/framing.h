// LSP base-protocol framing: "Content-Length: N\r\n[Content-Type: ...\r\n]\r\n"
// followed by N bytes of JSON. Only transports use this file.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace ghostd::server {

// One decoded unit of the byte stream: a message body or a framing error.
struct Frame {
  enum class Kind { kMessage, kTooLarge, kBadHeader };
  Kind kind = Kind::kMessage;
  std::string body;   // kMessage: the JSON text
  std::string error;  // otherwise: what was wrong, for the error reply
};

// Incremental decoder: accepts any split of the stream (partial reads, several
// messages per read). A message over the size limit is skipped as it streams
// by and never buffered; a malformed header block is reported and the decoder
// resynchronizes at the next "Content-Length" header.
// Thread-safety: not thread-safe; one decoder per connection.
class FrameDecoder {
 public:
  static constexpr size_t kMaxHeaderBytes = 8192;
  explicit FrameDecoder(size_t max_message_bytes) : max_message_bytes_(max_message_bytes) {}

  // Appends decoded frames to `out`.
  void feed(std::string_view data, std::vector<Frame>& out);
  // Bytes held while waiting for the rest of a header block or body.
  size_t buffered_bytes() const { return buffer_.size(); }

 private:
  enum class State { kHeader, kBody, kSkipBody, kResync };
  // Parses one complete header block; returns false with `error` set when malformed.
  bool parse_headers(std::string_view block, size_t& length, std::string& error) const;

  size_t max_message_bytes_;
  State state_ = State::kHeader;
  std::string buffer_;
  size_t body_length_ = 0;
  size_t skip_left_ = 0;
};

// Frames one message body for the wire.
std::string encode_frame(std::string_view body);

}  // namespace ghostd::server
