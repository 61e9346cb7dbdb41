#include "server/framing.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using ghostd::server::encode_frame;
using ghostd::server::Frame;
using ghostd::server::FrameDecoder;

namespace {

// Feeds `stream` in chunks of `chunk` bytes; renders frames as "M:body" / "E:kind".
std::vector<std::string> decode(const std::string& stream, size_t chunk, size_t limit = 1024) {
  FrameDecoder dec(limit);
  std::vector<Frame> frames;
  for (size_t i = 0; i < stream.size(); i += chunk) dec.feed(std::string_view(stream).substr(i, chunk), frames);
  std::vector<std::string> out;
  for (auto& f : frames) {
    switch (f.kind) {
      case Frame::Kind::kMessage: out.push_back("M:" + f.body); break;
      case Frame::Kind::kTooLarge: out.push_back("E:large"); break;
      case Frame::Kind::kBadHeader: out.push_back("E:header"); break;
    }
  }
  return out;
}

struct Case {
  const char* name;
  std::string stream;
  std::vector<std::string> expected;
};

}  // namespace

TEST_CASE("framing decodes any split of the stream") {
  std::string big(2000, 'x');
  const std::vector<Case> cases = {
      {"one", encode_frame("{}"), {"M:{}"}},
      {"two in one read", encode_frame("[1]") + encode_frame("[2]"), {"M:[1]", "M:[2]"}},
      {"content-type", "Content-Length: 2\r\nContent-Type: application/vscode-jsonrpc; charset=utf-8\r\n\r\n{}",
       {"M:{}"}},
      {"lower-case header and bare LF", "content-length: 3\n\nabc", {"M:abc"}},
      {"zero length", "Content-Length: 0\r\n\r\n" + encode_frame("a"), {"M:", "M:a"}},
      {"too large is skipped", encode_frame(big) + encode_frame("ok"), {"E:large", "M:ok"}},
      {"missing length", "Content-Type: x\r\n\r\n{}" + encode_frame("ok"), {"E:header", "M:ok"}},
      {"bad length", "Content-Length: abc\r\n\r\n{}" + encode_frame("ok"), {"E:header", "M:ok"}},
      {"negative length", "Content-Length: -5\r\n\r\n" + encode_frame("ok"), {"E:header", "M:ok"}},
      {"garbage line", "hello world\r\n\r\n" + encode_frame("ok"), {"E:header", "M:ok"}},
      {"stray blank line", "\r\n" + encode_frame("ok"), {"M:ok"}},
      {"endless header", std::string(9000, 'h') + "\n" + encode_frame("ok"), {"E:header", "M:ok"}},
  };
  for (const auto& c : cases) {
    for (size_t chunk : {size_t{1}, size_t{3}, size_t{7}, size_t{100000}}) {
      std::string got, want;
      for (auto& s : decode(c.stream, chunk)) got += s + "|";
      for (auto& s : c.expected) want += s + "|";
      INFO(c.name, " chunk ", chunk);
      CHECK(got == want);
    }
  }
}

TEST_CASE("framing never buffers an oversized body") {
  FrameDecoder dec(16);
  std::vector<Frame> frames;
  dec.feed("Content-Length: 1000000000\r\n\r\n", frames);
  for (int i = 0; i < 100; ++i) dec.feed(std::string(4096, 'z'), frames);
  CHECK(dec.buffered_bytes() == 0);
  REQUIRE(frames.size() == 1);
  CHECK(frames[0].kind == Frame::Kind::kTooLarge);
  CHECK(frames[0].error.find("1000000000") != std::string::npos);
}

TEST_CASE("framing handles a flood of messages in one read") {
  std::string stream;
  for (int i = 0; i < 10000; ++i) stream += encode_frame(std::to_string(i));
  auto out = decode(stream, stream.size(), 64);
  REQUIRE(out.size() == 10000);
  CHECK(out.back() == "M:9999");
}
