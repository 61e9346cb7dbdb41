#include "runtime/model/gguf.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <set>

namespace ghostd::runtime {
namespace {

constexpr int kMaxArrayDepth = 8;  // nested arrays; bounds recursion on hostile files
constexpr uint32_t kMaxDims = 4;   // GGML_MAX_DIMS

size_t fixed_size(GgufType t) {
  switch (t) {
    case GgufType::kU8: case GgufType::kI8: case GgufType::kBool: return 1;
    case GgufType::kU16: case GgufType::kI16: return 2;
    case GgufType::kU32: case GgufType::kI32: case GgufType::kF32: return 4;
    case GgufType::kU64: case GgufType::kI64: case GgufType::kF64: return 8;
    case GgufType::kString: case GgufType::kArray: return 0;
  }
  return 0;
}

template <class T>
T load(const std::byte* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

bool integer_type(GgufType t) {
  switch (t) {
    case GgufType::kU8: case GgufType::kI8: case GgufType::kU16: case GgufType::kI16:
    case GgufType::kU32: case GgufType::kI32: case GgufType::kU64: case GgufType::kI64:
      return true;
    default:
      return false;
  }
}

std::optional<int64_t> load_int(GgufType t, const std::byte* p) {
  switch (t) {
    case GgufType::kU8: return load<uint8_t>(p);
    case GgufType::kI8: return load<int8_t>(p);
    case GgufType::kU16: return load<uint16_t>(p);
    case GgufType::kI16: return load<int16_t>(p);
    case GgufType::kU32: return load<uint32_t>(p);
    case GgufType::kI32: return load<int32_t>(p);
    case GgufType::kI64: return load<int64_t>(p);
    case GgufType::kU64: {
      const auto v = load<uint64_t>(p);
      if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
      return static_cast<int64_t>(v);
    }
    default: return std::nullopt;
  }
}

std::optional<double> load_float(GgufType t, const std::byte* p) {
  if (t == GgufType::kF32) return load<float>(p);
  if (t == GgufType::kF64) return load<double>(p);
  if (auto i = load_int(t, p)) return static_cast<double>(*i);
  return std::nullopt;
}

const char* ggml_type_name(uint32_t t) {
  static constexpr const char* kNames[] = {
      "F32", "F16", "Q4_0", "Q4_1", "type 4", "type 5", "Q5_0", "Q5_1", "Q8_0", "Q8_1",
      "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K", "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S",
      "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS", "I8", "I16", "I32", "I64", "F64", "IQ1_M", "BF16"};
  return t < std::size(kNames) ? kNames[t] : nullptr;
}

bool dtype_from_ggml(uint32_t t, DType* out) {
  switch (t) {
    case 0: *out = DType::kF32; return true;
    case 1: *out = DType::kF16; return true;
    case 2: *out = DType::kQ4_0; return true;
    case 3: *out = DType::kQ4_1; return true;
    case 6: *out = DType::kQ5_0; return true;
    case 7: *out = DType::kQ5_1; return true;
    case 8: *out = DType::kQ8_0; return true;
    case 12: *out = DType::kQ4_K; return true;
    case 13: *out = DType::kQ5_K; return true;
    case 14: *out = DType::kQ6_K; return true;
    case 30: *out = DType::kBF16; return true;
    default: return false;
  }
}

}  // namespace

bool GgufValue::is_integer() const { return integer_type(type_); }

std::optional<int64_t> GgufValue::as_int() const {
  if (!integer_type(type_)) return std::nullopt;
  return load_int(type_, raw_);
}

std::optional<double> GgufValue::as_float() const {
  if (type_ == GgufType::kArray || type_ == GgufType::kString || type_ == GgufType::kBool) return std::nullopt;
  return load_float(type_, raw_);
}

std::optional<bool> GgufValue::as_bool() const {
  if (type_ != GgufType::kBool) return std::nullopt;
  return load<uint8_t>(raw_) != 0;
}

std::optional<std::string_view> GgufValue::as_string() const {
  if (type_ != GgufType::kString) return std::nullopt;
  return str_;
}

std::optional<int64_t> GgufValue::int_at(size_t i) const {
  if (type_ != GgufType::kArray || i >= count_ || !integer_type(elem_type_)) return std::nullopt;
  return load_int(elem_type_, raw_ + i * fixed_size(elem_type_));
}

std::optional<double> GgufValue::float_at(size_t i) const {
  if (type_ != GgufType::kArray || i >= count_ || fixed_size(elem_type_) == 0 ||
      elem_type_ == GgufType::kBool) {
    return std::nullopt;
  }
  return load_float(elem_type_, raw_ + i * fixed_size(elem_type_));
}

std::optional<std::string_view> GgufValue::string_at(size_t i) const {
  if (type_ != GgufType::kArray || elem_type_ != GgufType::kString || i >= strings_.size()) return std::nullopt;
  return strings_[i];
}

// Cursor over the mapped bytes; every read is bounds-checked.
class GgufParser {
 public:
  GgufParser(std::span<const std::byte> bytes, std::string fname) : b_(bytes), fname_(std::move(fname)) {}

  Status parse(GgufFile& f);

 private:
  size_t left() const { return b_.size() - pos_; }
  Error fail(const std::string& msg) const {
    return Error{fname_ + ": " + msg + " (at byte " + std::to_string(pos_) + " of " +
                 std::to_string(b_.size()) + ")"};
  }
  template <class T>
  bool read(T* out) {
    if (left() < sizeof(T)) return false;
    std::memcpy(out, b_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return true;
  }
  bool read_string(std::string_view* out) {
    uint64_t n = 0;
    if (!read(&n) || n > left()) return false;
    *out = std::string_view(reinterpret_cast<const char*>(b_.data() + pos_), n);
    pos_ += n;
    return true;
  }
  Status read_value(GgufType type, GgufValue* v, int depth, const std::string& key);

  std::span<const std::byte> b_;
  std::string fname_;
  size_t pos_ = 0;
};

Status GgufParser::read_value(GgufType type, GgufValue* v, int depth, const std::string& key) {
  const std::string where = "metadata '" + key + "'";
  v->type_ = type;
  if (const size_t size = fixed_size(type); size != 0) {
    if (left() < size) return fail("truncated value of " + where);
    v->raw_ = b_.data() + pos_;
    pos_ += size;
    return {};
  }
  if (type == GgufType::kString) {
    if (!read_string(&v->str_)) return fail("truncated string value of " + where);
    return {};
  }
  if (type != GgufType::kArray) return fail(where + " has unknown value type " + std::to_string(static_cast<uint32_t>(type)));
  if (depth >= kMaxArrayDepth) return fail(where + " nests arrays deeper than " + std::to_string(kMaxArrayDepth));
  uint32_t elem = 0;
  uint64_t count = 0;
  if (!read(&elem) || !read(&count)) return fail("truncated array header of " + where);
  if (elem > static_cast<uint32_t>(GgufType::kF64)) {
    return fail(where + " is an array of unknown value type " + std::to_string(elem));
  }
  v->elem_type_ = static_cast<GgufType>(elem);
  // Each element takes at least min_size bytes: check the count fits before
  // allocating anything for it.
  const size_t size = fixed_size(v->elem_type_);
  const size_t min_size = size != 0 ? size : (v->elem_type_ == GgufType::kString ? 8 : 12);
  if (count > left() / min_size) {
    return fail(where + " claims " + std::to_string(count) + " elements, more than the file holds");
  }
  v->count_ = static_cast<size_t>(count);
  if (size != 0) {
    v->raw_ = b_.data() + pos_;
    pos_ += v->count_ * size;
  } else if (v->elem_type_ == GgufType::kString) {
    v->strings_.resize(v->count_);
    for (auto& s : v->strings_) {
      if (!read_string(&s)) return fail("truncated string element of " + where);
    }
  } else {
    v->arrays_.resize(v->count_);
    // Each nested element is itself {element type, count, elements}.
    for (auto& a : v->arrays_) GHOSTD_TRY_STATUS(read_value(GgufType::kArray, &a, depth + 1, key));
  }
  return {};
}

Status GgufParser::parse(GgufFile& f) {
  uint32_t magic = 0;
  if (!read(&magic) || std::memcmp(b_.data(), "GGUF", 4) != 0) return fail("not a GGUF file (bad magic)");
  if (!read(&f.version_)) return fail("truncated header");
  if (f.version_ == 1) return fail("GGUF version 1 is not supported (expected 2 or 3)");
  if (f.version_ != 2 && f.version_ != 3) {
    if ((f.version_ >> 24) == 2 || (f.version_ >> 24) == 3) return fail("big-endian GGUF is not supported");
    return fail("unsupported GGUF version " + std::to_string(f.version_) + " (expected 2 or 3)");
  }
  uint64_t n_tensors = 0, n_kv = 0;
  if (!read(&n_tensors) || !read(&n_kv)) return fail("truncated header");
  // Minimum encoded sizes: a key/value is 8 (key length) + 4 (type) + 1; a
  // tensor info is 8 (name length) + 4 (n_dims) + 4 (type) + 8 (offset).
  if (n_kv > left() / 13) return fail("header claims " + std::to_string(n_kv) + " metadata entries, more than the file holds");
  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string_view key;
    uint32_t type = 0;
    if (!read_string(&key)) return fail("truncated metadata key #" + std::to_string(i));
    std::string k(key);
    if (!read(&type)) return fail("truncated type of metadata '" + k + "'");
    GgufValue v;
    GHOSTD_TRY_STATUS(read_value(static_cast<GgufType>(type), &v, 0, k));
    if (!f.kv_.emplace(k, std::move(v)).second) return fail("metadata key '" + k + "' appears twice");
    f.key_order_.push_back(std::move(k));
  }
  if (const GgufValue* a = f.find("general.alignment")) {
    const auto v = a->as_int();
    if (!v || *v <= 0 || *v > (1 << 30) || (*v & (*v - 1)) != 0) {
      return fail("general.alignment must be a positive power of two");
    }
    f.alignment_ = static_cast<uint32_t>(*v);
  }

  if (n_tensors > left() / 24) {
    return fail("header claims " + std::to_string(n_tensors) + " tensors, more than the file holds");
  }
  struct Info {
    uint64_t offset;
    size_t index;
  };
  std::vector<Info> infos;
  std::set<std::string, std::less<>> names;
  f.tensors_.reserve(static_cast<size_t>(n_tensors));
  for (uint64_t i = 0; i < n_tensors; ++i) {
    std::string_view name;
    if (!read_string(&name)) return fail("truncated name of tensor #" + std::to_string(i));
    TensorView t;
    t.name = std::string(name);
    const std::string where = "tensor '" + t.name + "'";
    uint32_t n_dims = 0;
    if (!read(&n_dims)) return fail("truncated info of " + where);
    if (n_dims > kMaxDims) return fail(where + " has " + std::to_string(n_dims) + " dimensions (at most 4)");
    std::vector<int64_t> ne(n_dims);
    uint64_t numel = 1;
    for (auto& d : ne) {
      uint64_t x = 0;
      if (!read(&x)) return fail("truncated shape of " + where);
      if (x > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
          (x != 0 && numel > (uint64_t{1} << 60) / x)) {
        return fail(where + " has an impossible shape");
      }
      d = static_cast<int64_t>(x);
      numel *= x;
    }
    uint32_t type = 0;
    uint64_t offset = 0;
    if (!read(&type) || !read(&offset)) return fail("truncated info of " + where);
    if (!dtype_from_ggml(type, &t.dtype)) {
      const char* tn = ggml_type_name(type);
      return fail(where + " has ggml type " + std::to_string(type) + (tn ? std::string(" (") + tn + ")" : "") +
                  "; supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K");
    }
    if (dtype_is_quantized(t.dtype) && (ne.empty() || ne[0] % dtype_block_elems(t.dtype) != 0)) {
      return fail(where + " is " + dtype_name(t.dtype) + " but its row length " +
                  (ne.empty() ? std::string("(none)") : std::to_string(ne[0])) + " is not a multiple of " +
                  std::to_string(dtype_block_elems(t.dtype)) + " (whole blocks)");
    }
    if (offset % f.alignment_ != 0) {
      return fail(where + " has offset " + std::to_string(offset) + ", not a multiple of the alignment " +
                  std::to_string(f.alignment_));
    }
    if (!names.insert(t.name).second) return fail(where + " appears twice");
    t.shape.assign(ne.rbegin(), ne.rend());  // ggml lists the innermost dimension first
    t.nbytes = dtype_bytes(t.dtype, static_cast<int64_t>(numel));
    infos.push_back({offset, f.tensors_.size()});
    f.tensors_.push_back(std::move(t));
  }

  const uint64_t data_start = (pos_ + f.alignment_ - 1) / f.alignment_ * f.alignment_;
  if (n_tensors > 0 && data_start > b_.size()) return fail("truncated before the tensor data section");
  const uint64_t data_size = n_tensors > 0 ? b_.size() - data_start : 0;
  for (const Info& in : infos) {
    TensorView& t = f.tensors_[in.index];
    if (in.offset > data_size || t.nbytes > data_size - in.offset) {
      return Error{fname_ + ": tensor '" + t.name + "' (" + std::to_string(t.nbytes) + " bytes at data offset " +
                   std::to_string(in.offset) + ") goes beyond the end of the file (data section " +
                   std::to_string(data_size) + " bytes; file truncated?)"};
    }
    t.data = b_.data() + data_start + in.offset;
  }
  std::sort(infos.begin(), infos.end(), [](const Info& a, const Info& b) { return a.offset < b.offset; });
  const Info* last = nullptr;
  for (const Info& in : infos) {
    const TensorView& t = f.tensors_[in.index];
    if (t.nbytes == 0) continue;
    if (last != nullptr && in.offset < last->offset + f.tensors_[last->index].nbytes) {
      return Error{fname_ + ": tensors '" + f.tensors_[last->index].name + "' and '" + t.name +
                   "' overlap in the data section"};
    }
    if (last == nullptr || in.offset + t.nbytes > last->offset + f.tensors_[last->index].nbytes) last = &in;
  }
  return {};
}

Result<GgufFile> GgufFile::open(const std::filesystem::path& path) {
  auto mapped = MappedFile::open(path);
  if (!mapped.ok()) return std::move(mapped).take_error();
  GgufFile f(std::move(mapped).value());
  GgufParser parser(f.file_.bytes(), path.string());
  GHOSTD_TRY_STATUS(parser.parse(f));
  return f;
}

const GgufValue* GgufFile::find(std::string_view key) const {
  auto it = kv_.find(key);
  return it == kv_.end() ? nullptr : &it->second;
}

const TensorView* GgufFile::find_tensor(std::string_view name) const {
  for (const auto& t : tensors_) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

std::optional<std::string> GgufFile::get_string(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::nullopt;
  auto s = v->as_string();
  if (!s) return std::nullopt;
  return std::string(*s);
}

std::optional<int64_t> GgufFile::get_int(std::string_view key) const {
  const GgufValue* v = find(key);
  return v == nullptr ? std::nullopt : v->as_int();
}

std::optional<double> GgufFile::get_float(std::string_view key) const {
  const GgufValue* v = find(key);
  return v == nullptr ? std::nullopt : v->as_float();
}

std::optional<std::vector<std::string>> GgufFile::get_string_array(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr || v->type() != GgufType::kArray || v->array_type() != GgufType::kString) return std::nullopt;
  std::vector<std::string> out;
  out.reserve(v->array_size());
  for (size_t i = 0; i < v->array_size(); ++i) out.emplace_back(*v->string_at(i));
  return out;
}

std::optional<std::vector<int64_t>> GgufFile::get_int_array(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr || v->type() != GgufType::kArray || !integer_type(v->array_type())) return std::nullopt;
  std::vector<int64_t> out;
  out.reserve(v->array_size());
  for (size_t i = 0; i < v->array_size(); ++i) {
    auto x = v->int_at(i);
    if (!x) return std::nullopt;  // u64 beyond int64
    out.push_back(*x);
  }
  return out;
}

}  // namespace ghostd::runtime
