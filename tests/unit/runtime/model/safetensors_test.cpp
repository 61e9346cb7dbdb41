#include "runtime/model/safetensors.h"

#include <doctest/doctest.h>

#include <optional>

#include "tests/unit/runtime/model_file_writers.h"

using namespace ghostd::runtime;
using ghostd::test::Bytes;
using ghostd::test::SafetensorsWriter;
using ghostd::test::TempDir;

namespace {

// Writes `bytes`, maps them into `keep` and parses.
Result<std::vector<TensorView>> parse_bytes(const TempDir& dir, const Bytes& bytes, std::optional<MappedFile>& keep) {
  ghostd::test::write_file(dir / "m.safetensors", bytes);
  auto f = MappedFile::open(dir / "m.safetensors");
  if (!f.ok()) return std::move(f).take_error();
  keep.emplace(std::move(f).value());
  return parse_safetensors(*keep);
}

std::string entry(const std::string& name, const std::string& dtype, const std::string& shape,
                  const std::string& offsets) {
  return "\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":" + offsets + "}";
}

}  // namespace

TEST_CASE("safetensors: tensors parse with dtype, shape and data in place") {
  TempDir dir;
  const std::vector<float> a = {1, 2, 3, 4, 5, 6};
  const std::vector<uint16_t> b = {f32_to_f16(0.5f), f32_to_f16(-1.0f)};
  const std::vector<uint16_t> c = {f32_to_bf16(3.0f)};
  SafetensorsWriter w;
  w.add("a", "F32", {2, 3}, ghostd::test::to_bytes(a))
      .add("b", "F16", {2}, ghostd::test::to_bytes(b))
      .add("c", "BF16", {1, 1, 1}, ghostd::test::to_bytes(c))
      .add("empty", "F32", {0, 4}, {})
      .add("scalar", "F32", {}, ghostd::test::to_bytes(std::vector<float>{7}));
  std::optional<MappedFile> keep;
  auto views = parse_bytes(dir, w.bytes(), keep);
  REQUIRE(views.ok());
  REQUIRE(views->size() == 5);
  std::map<std::string, TensorView> by_name;
  for (const auto& v : *views) by_name[v.name] = v;
  const TensorView& ta = by_name["a"];
  CHECK(ta.dtype == DType::kF32);
  CHECK(ta.shape == std::vector<int64_t>{2, 3});
  CHECK(ta.numel() == 6);
  CHECK(ta.rows() == 2);
  CHECK(ta.cols() == 3);
  CHECK(ta.nbytes == 24);
  // Zero-copy: the view points into the mapping.
  CHECK(ta.data >= keep->bytes().data());
  CHECK(ta.data + ta.nbytes <= keep->bytes().data() + keep->bytes().size());
  float a5;
  std::memcpy(&a5, ta.data + 20, 4);
  CHECK(a5 == 6.0f);
  CHECK(by_name["b"].dtype == DType::kF16);
  uint16_t b1;
  std::memcpy(&b1, by_name["b"].data + 2, 2);
  CHECK(f16_to_f32(b1) == -1.0f);
  CHECK(by_name["c"].dtype == DType::kBF16);
  CHECK(by_name["c"].rows() == 1);
  CHECK(by_name["empty"].nbytes == 0);
  CHECK(by_name["scalar"].numel() == 1);
  CHECK(by_name["scalar"].shape.empty());
}

TEST_CASE("safetensors: malformed files give errors naming the file and tensor") {
  struct Case {
    const char* what;
    Bytes bytes;
    std::vector<std::string> expect;  // substrings of the message
  };
  const Bytes f32x4(16, 0);
  std::vector<Case> cases = {
      {"empty file", {}, {"m.safetensors", "truncated"}},
      {"short header length", {1, 0, 0}, {"truncated"}},
      {"header length beyond the file",
       [] {
         Bytes b = ghostd::test::safetensors_raw("{}", {});
         b[0] = 200;
         return b;
       }(),
       {"m.safetensors", "header length 200", "beyond the end"}},
      {"header length 2^64-1",
       [] {
         Bytes b = ghostd::test::safetensors_raw("{}", {});
         for (int i = 0; i < 8; ++i) b[i] = 0xff;
         return b;
       }(),
       {"header length 18446744073709551615"}},
      {"header not JSON", ghostd::test::safetensors_raw("{\"a\":", {}), {"m.safetensors", "not valid JSON"}},
      {"header not an object", ghostd::test::safetensors_raw("[1,2]", {}), {"not a JSON object"}},
      {"unknown dtype", ghostd::test::safetensors_raw("{" + entry("w", "I64", "[2]", "[0,16]") + "}", f32x4),
       {"tensor 'w'", "unsupported dtype 'I64'"}},
      {"offsets out of range", ghostd::test::safetensors_raw("{" + entry("w", "F32", "[8]", "[0,32]") + "}", f32x4),
       {"m.safetensors", "tensor 'w'", "beyond the data section"}},
      {"truncated data", ghostd::test::safetensors_raw("{" + entry("w", "F32", "[4]", "[0,16]") + "}", Bytes(10, 0)),
       {"tensor 'w'", "truncated?"}},
      {"begin after end", ghostd::test::safetensors_raw("{" + entry("w", "F32", "[0]", "[8,4]") + "}", f32x4),
       {"tensor 'w'", "begin <= end"}},
      {"offsets not matching the shape",
       ghostd::test::safetensors_raw("{" + entry("w", "F32", "[3]", "[0,16]") + "}", f32x4),
       {"tensor 'w'", "span 16 bytes", "[3]", "needs 12"}},
      {"offsets not matching the dtype",
       ghostd::test::safetensors_raw("{" + entry("w", "F16", "[4]", "[0,16]") + "}", f32x4),
       {"tensor 'w'", "F16 needs 8"}},
      {"overlapping offsets",
       ghostd::test::safetensors_raw(
           "{" + entry("w1", "F32", "[3]", "[0,12]") + "," + entry("w2", "F32", "[2]", "[8,16]") + "}", f32x4),
       {"m.safetensors", "'w1' and 'w2'", "overlapping"}},
      {"overlap across an empty tensor",
       ghostd::test::safetensors_raw("{" + entry("big", "F32", "[4]", "[0,16]") + "," +
                                         entry("e", "F32", "[0]", "[4,4]") + "," + entry("x", "F32", "[1]", "[8,12]") +
                                         "}",
                                     f32x4),
       {"'big' and 'x'", "overlapping"}},
      {"negative shape", ghostd::test::safetensors_raw("{" + entry("w", "F32", "[-4]", "[0,16]") + "}", f32x4),
       {"tensor 'w'", "non-negative"}},
      {"huge shape overflows",
       ghostd::test::safetensors_raw(
           "{" + entry("w", "F32", "[4294967296,4294967296]", "[0,16]") + "}", f32x4),
       {"tensor 'w'", "more than 2^64"}},
      {"missing dtype", ghostd::test::safetensors_raw("{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", f32x4),
       {"tensor 'w'", "'dtype'"}},
      {"missing offsets", ghostd::test::safetensors_raw("{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", f32x4),
       {"tensor 'w'", "'data_offsets'"}},
      {"tensor listed twice",
       ghostd::test::safetensors_raw(
           "{" + entry("w", "F32", "[1]", "[0,4]") + "," + entry("w", "F32", "[1]", "[4,8]") + "}", f32x4),
       {"key 'w' appears twice"}},
  };
  for (const auto& c : cases) {
    CAPTURE(c.what);
    TempDir dir;
    std::optional<MappedFile> keep;
    auto r = parse_bytes(dir, c.bytes, keep);
    REQUIRE_FALSE(r.ok());
    for (const auto& s : c.expect) {
      CAPTURE(r.error().message);
      CHECK(r.error().message.find(s) != std::string::npos);
    }
  }
}

TEST_CASE("safetensors: an empty header and metadata-only header give no tensors") {
  TempDir dir;
  std::optional<MappedFile> keep;
  auto r = parse_bytes(dir, ghostd::test::safetensors_raw("{}", {}), keep);
  REQUIRE(r.ok());
  CHECK(r->empty());
  auto m = parse_bytes(dir, SafetensorsWriter().bytes(), keep);
  REQUIRE(m.ok());
  CHECK(m->empty());
}
