// Reader for GGUF (v2 and v3) model files: metadata key/values plus tensor
// infos, with the tensor data used in place from the mapping.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/core/mapped_file.h"
#include "runtime/core/result.h"
#include "runtime/core/tensor.h"

namespace ghostd::runtime {

enum class GgufType : uint32_t {
  kU8 = 0, kI8 = 1, kU16 = 2, kI16 = 3, kU32 = 4, kI32 = 5, kF32 = 6, kBool = 7,
  kString = 8, kArray = 9, kU64 = 10, kI64 = 11, kF64 = 12,
};

// One metadata value. Strings and array elements point into the file's
// mapping (arrays of 150k vocabulary strings are not copied).
// Thread-safety: immutable; valid while its GgufFile lives.
class GgufValue {
 public:
  GgufType type() const { return type_; }
  bool is_integer() const;

  std::optional<int64_t> as_int() const;  // any integer type (u64 above INT64_MAX: none)
  std::optional<double> as_float() const;  // f32, f64 or an integer
  std::optional<bool> as_bool() const;
  std::optional<std::string_view> as_string() const;

  // Arrays: element type, count and element access (none when out of range or
  // of another type). Nested arrays are held as values.
  GgufType array_type() const { return elem_type_; }
  size_t array_size() const { return type_ == GgufType::kArray ? count_ : 0; }
  std::optional<int64_t> int_at(size_t i) const;
  std::optional<double> float_at(size_t i) const;
  std::optional<std::string_view> string_at(size_t i) const;

 private:
  friend class GgufParser;
  GgufType type_ = GgufType::kU8;
  GgufType elem_type_ = GgufType::kU8;
  const std::byte* raw_ = nullptr;  // scalar, or first fixed-size array element
  size_t count_ = 0;
  std::string_view str_;
  std::vector<std::string_view> strings_;  // string array elements
  std::vector<GgufValue> arrays_;          // nested array elements
};

// A parsed GGUF file. Every offset and count from the file is checked against
// its size before use; tensor types other than F32, F16, BF16, Q8_0, Q4_0,
// Q4_1, Q5_0, Q5_1, Q4_K, Q5_K and Q6_K are an
// error naming the tensor. Shapes are converted to PyTorch order (outermost
// first). Move-only; views stay valid while it lives.
// Thread-safety: immutable after open; const methods may run concurrently.
class GgufFile {
 public:
  static Result<GgufFile> open(const std::filesystem::path& path);

  const GgufValue* find(std::string_view key) const;
  std::optional<std::string> get_string(std::string_view key) const;
  std::optional<int64_t> get_int(std::string_view key) const;  // any integer type
  std::optional<double> get_float(std::string_view key) const;  // f32/f64 (or integer)
  std::optional<std::vector<std::string>> get_string_array(std::string_view key) const;
  std::optional<std::vector<int64_t>> get_int_array(std::string_view key) const;

  const std::vector<TensorView>& tensors() const { return tensors_; }
  const TensorView* find_tensor(std::string_view name) const;
  uint32_t version() const { return version_; }
  uint32_t alignment() const { return alignment_; }
  const std::filesystem::path& path() const { return file_.path(); }
  // The mapping, for MappedFile::settle (which keeps the bytes and their address).
  MappedFile& mapped_file() { return file_; }
  // Metadata keys in file order.
  const std::vector<std::string>& keys() const { return key_order_; }

 private:
  friend class GgufParser;
  explicit GgufFile(MappedFile file) : file_(std::move(file)) {}

  MappedFile file_;
  uint32_t version_ = 0;
  uint32_t alignment_ = 32;
  std::map<std::string, GgufValue, std::less<>> kv_;
  std::vector<std::string> key_order_;
  std::vector<TensorView> tensors_;
};

}  // namespace ghostd::runtime
