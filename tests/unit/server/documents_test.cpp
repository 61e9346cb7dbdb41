#include "server/documents.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

using namespace ghostd::server;

namespace {

// Naive reference: positions by scanning the whole string from the start.
size_t naive_offset(const std::string& s, TextPosition p, PositionEncoding enc) {
  size_t off = 0;
  for (int64_t l = 0; l < p.line; ++l) {
    size_t nl = s.find('\n', off);
    if (nl == std::string::npos) return s.size();
    off = nl + 1;
  }
  size_t end = s.find('\n', off);
  if (end == std::string::npos) {
    end = s.size();
  } else if (end > off && s[end - 1] == '\r') {
    --end;
  }
  int64_t units = 0;
  while (off < end) {
    unsigned char c = static_cast<unsigned char>(s[off]);
    size_t len = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    int64_t u = enc == PositionEncoding::kUtf8 ? static_cast<int64_t>(len)
                : enc == PositionEncoding::kUtf16 ? (len == 4 ? 2 : 1)
                                                  : 1;
    if (units + u > p.character) break;
    units += u;
    off += len;
  }
  return off;
}

}  // namespace

TEST_CASE("positions in each encoding, with astral characters and CRLF") {
  // "a😀b" has 😀 (U+1F600) = 4 UTF-8 bytes, 2 UTF-16 units, 1 UTF-32 unit.
  Document d("file:///t", "cpp", 1, "a\xF0\x9F\x98\x80" "b\r\nx\xC3\xA9y\n");
  struct Case {
    PositionEncoding enc;
    TextPosition pos;
    size_t offset;
  };
  const std::vector<Case> cases = {
      {PositionEncoding::kUtf16, {0, 1}, 1},  {PositionEncoding::kUtf16, {0, 2}, 1},
      {PositionEncoding::kUtf16, {0, 3}, 5},  {PositionEncoding::kUtf16, {0, 4}, 6},
      {PositionEncoding::kUtf16, {0, 99}, 6},  // clamped before "\r\n"
      {PositionEncoding::kUtf8, {0, 5}, 5},   {PositionEncoding::kUtf8, {0, 3}, 1},
      {PositionEncoding::kUtf32, {0, 2}, 5},  {PositionEncoding::kUtf16, {1, 2}, 11},
      {PositionEncoding::kUtf16, {2, 0}, 13}, {PositionEncoding::kUtf16, {7, 3}, 13},
      {PositionEncoding::kUtf16, {-1, 0}, 0},
  };
  for (const auto& c : cases) {
    INFO(position_encoding_name(c.enc), " ", c.pos.line, ":", c.pos.character);
    CHECK(d.offset_of(c.pos, c.enc) == c.offset);
  }
  CHECK(d.position_of(5, PositionEncoding::kUtf16) == TextPosition{0, 3});
  CHECK(d.position_of(5, PositionEncoding::kUtf8) == TextPosition{0, 5});
  CHECK(d.position_of(11, PositionEncoding::kUtf16) == TextPosition{1, 2});
}

TEST_CASE("invalid UTF-8 in content is replaced") {
  Document d("file:///t", "cpp", 1, "a\xFF" "b");
  CHECK(d.text().str() == "a\xEF\xBF\xBD" "b");
  REQUIRE(d.apply({TextRange{{0, 1}, {0, 1}}, "\xC0"}, PositionEncoding::kUtf16).ok());
  CHECK(d.text().str() == "a\xEF\xBF\xBD\xEF\xBF\xBD" "b");
}

TEST_CASE("random edit sequences match a naive model") {
  std::mt19937 rng(42);
  const std::vector<std::string> pieces = {"a", "bc", "\n", "\r\n", "\xC3\xA9", "\xF0\x9F\x98\x80", "  ", "{\n}", ""};
  for (PositionEncoding enc : {PositionEncoding::kUtf16, PositionEncoding::kUtf8, PositionEncoding::kUtf32}) {
    std::string model = "int main() {\n  return 0;\n}\n";
    Document d("file:///r", "cpp", 0, model);
    for (int step = 0; step < 3000; ++step) {
      auto rand_pos = [&] {
        return TextPosition{static_cast<int64_t>(rng() % 12), static_cast<int64_t>(rng() % 14)};
      };
      TextPosition a = rand_pos(), b = rand_pos();
      size_t oa = naive_offset(model, a, enc), ob = naive_offset(model, b, enc);
      if (ob < oa) {
        std::swap(a, b);
        std::swap(oa, ob);
      }
      std::string text;
      for (unsigned k = rng() % 3; k > 0; --k) text += pieces[rng() % pieces.size()];
      if (rng() % 500 == 0) {
        REQUIRE(d.apply({std::nullopt, text}, enc).ok());
        model = text;
      } else {
        REQUIRE(d.apply({TextRange{a, b}, text}, enc).ok());
        model.replace(oa, ob - oa, text);
      }
      REQUIRE(d.text().str() == model);
      REQUIRE(d.text().line_count() == static_cast<size_t>(std::count(model.begin(), model.end(), '\n')) + 1);
      TextPosition p = rand_pos();
      size_t off = d.offset_of(p, enc);
      REQUIRE(off == naive_offset(model, p, enc));
      TextPosition back = d.position_of(off, enc);
      REQUIRE(d.offset_of(back, enc) == off);
    }
  }
}

TEST_CASE("document store lifecycle") {
  DocumentStore store;
  store.open("file:///a", "py", 1, "x = 1\n");
  store.open("file:///b", "py", 1, "y = 2\n");
  CHECK(store.change("file:///a", 2, {{TextRange{{0, 4}, {0, 5}}, "42"}}, PositionEncoding::kUtf16).ok());
  CHECK(store.find("file:///a")->text().str() == "x = 42\n");
  CHECK(store.find("file:///a")->version() == 2);
  auto unknown = store.change("file:///zzz", 1, {}, PositionEncoding::kUtf16);
  CHECK_FALSE(unknown.ok());
  CHECK(unknown.message().find("file:///zzz") != std::string::npos);
  auto order = store.in_open_order();
  REQUIRE(order.size() == 2);
  CHECK(order[0]->uri() == "file:///a");
  CHECK(store.close("file:///a"));
  CHECK_FALSE(store.close("file:///a"));
}

TEST_CASE("typing into a large document touches only the edit") {
  std::string big;
  for (int i = 0; i < 10000; ++i) big += "    value_" + std::to_string(i) + " = compute(" + std::to_string(i) + ");\n";
  Document d("file:///big", "cpp", 0, big);
  // Type 2000 characters at line 5000: every step must stay correct.
  for (int i = 0; i < 2000; ++i) {
    REQUIRE(d.apply({TextRange{{5000, 4 + i}, {5000, 4 + i}}, "x"}, PositionEncoding::kUtf16).ok());
  }
  CHECK(d.text().line_count() == 10001);
  CHECK(d.offset_of({5001, 0}, PositionEncoding::kUtf16) == big.find("value_5001") - 4 + 2000);
}
