// Test helpers that write small safetensors and GGUF files byte by byte, so
// the loaders are tested on files whose every field the test controls.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace ghostd::test {

using Bytes = std::vector<uint8_t>;

// A fresh directory under the system temp dir, removed with its contents.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "ghostd_test_XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

inline void write_file(const std::filesystem::path& path, const Bytes& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

inline void write_text(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

// (resize + memcpy rather than insert of a pointer range: GCC 12 at -O3
// reports a false -Wstringop-overflow for the latter.)
template <class T>
void put(Bytes& b, T v) {
  const size_t n = b.size();
  b.resize(n + sizeof v);
  std::memcpy(b.data() + n, &v, sizeof v);
}

template <class T>
Bytes to_bytes(const std::vector<T>& values) {
  Bytes b;
  for (const T& v : values) put(b, v);
  return b;
}

// An 8-byte header length, the header text as given, then `data`.
inline Bytes safetensors_raw(const std::string& header, const Bytes& data) {
  Bytes b(8 + header.size() + data.size());
  const uint64_t n = header.size();
  std::memcpy(b.data(), &n, 8);
  std::memcpy(b.data() + 8, header.data(), header.size());
  if (!data.empty()) std::memcpy(b.data() + 8 + header.size(), data.data(), data.size());
  return b;
}

// Builds a well-formed safetensors file with consecutive data offsets.
class SafetensorsWriter {
 public:
  SafetensorsWriter& add(const std::string& name, const std::string& dtype, const std::vector<int64_t>& shape,
                         const Bytes& data) {
    if (!header_.empty()) header_ += ",";
    header_ += "\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":[";
    for (size_t i = 0; i < shape.size(); ++i) {
      if (i) header_ += ',';  // not `"," + std::string`: a false -Wrestrict in GCC 12 at -O3
      header_ += std::to_string(shape[i]);
    }
    header_ += "],\"data_offsets\":[" + std::to_string(data_.size()) + "," +
               std::to_string(data_.size() + data.size()) + "]}";
    data_.insert(data_.end(), data.begin(), data.end());
    return *this;
  }
  std::string header() const {
    std::string h = "{\"__metadata__\":{\"format\":\"pt\"}" + std::string(header_.empty() ? "" : ",") + header_ + "}";
    h.append((8 - h.size() % 8) % 8, ' ');  // keep the data 8-byte aligned
    return h;
  }
  Bytes bytes() const { return safetensors_raw(header(), data_); }
  void write(const std::filesystem::path& path) const { write_file(path, bytes()); }

 private:
  std::string header_;
  Bytes data_;
};

// GGUF value type codes.
enum : uint32_t { kGU8 = 0, kGI8, kGU16, kGI16, kGU32, kGI32, kGF32, kGBool, kGString, kGArray, kGU64, kGI64, kGF64 };

// Builds a GGUF file: metadata, tensor infos, aligned data.
class GgufWriter {
 public:
  explicit GgufWriter(uint32_t version = 3) : version_(version) {}

  static void put_string(Bytes& b, const std::string& s) {
    put<uint64_t>(b, s.size());
    b.insert(b.end(), s.begin(), s.end());
  }
  GgufWriter& key(const std::string& k, uint32_t type) {
    put_string(kv_, k);
    put<uint32_t>(kv_, type);
    ++n_kv_;
    return *this;
  }
  GgufWriter& str(const std::string& k, const std::string& v) {
    key(k, kGString);
    put_string(kv_, v);
    return *this;
  }
  GgufWriter& u32(const std::string& k, uint32_t v) {
    key(k, kGU32);
    put(kv_, v);
    return *this;
  }
  GgufWriter& i32(const std::string& k, int32_t v) {
    key(k, kGI32);
    put(kv_, v);
    return *this;
  }
  GgufWriter& u64(const std::string& k, uint64_t v) {
    key(k, kGU64);
    put(kv_, v);
    return *this;
  }
  GgufWriter& f32(const std::string& k, float v) {
    key(k, kGF32);
    put(kv_, v);
    return *this;
  }
  GgufWriter& boolean(const std::string& k, bool v) {
    key(k, kGBool);
    put<uint8_t>(kv_, v ? 1 : 0);
    return *this;
  }
  GgufWriter& strings(const std::string& k, const std::vector<std::string>& v) {
    key(k, kGArray);
    put<uint32_t>(kv_, kGString);
    put<uint64_t>(kv_, v.size());
    for (const auto& s : v) put_string(kv_, s);
    return *this;
  }
  GgufWriter& i32s(const std::string& k, const std::vector<int32_t>& v) {
    key(k, kGArray);
    put<uint32_t>(kv_, kGI32);
    put<uint64_t>(kv_, v.size());
    for (int32_t x : v) put(kv_, x);
    return *this;
  }
  // Appends raw bytes to the metadata section (for malformed entries).
  GgufWriter& raw_kv(const Bytes& b, uint64_t count_as = 1) {
    kv_.insert(kv_.end(), b.begin(), b.end());
    n_kv_ += count_as;
    return *this;
  }
  // ne: ggml order (innermost first). The data is placed at the next aligned
  // offset unless `offset` is given.
  GgufWriter& tensor(const std::string& name, const std::vector<uint64_t>& ne, uint32_t type, const Bytes& data,
                     int64_t offset = -1) {
    put_string(infos_, name);
    put<uint32_t>(infos_, static_cast<uint32_t>(ne.size()));
    for (uint64_t d : ne) put(infos_, d);
    put<uint32_t>(infos_, type);
    while (data_.size() % alignment_ != 0) data_.push_back(0);
    put<uint64_t>(infos_, offset >= 0 ? static_cast<uint64_t>(offset) : data_.size());
    data_.insert(data_.end(), data.begin(), data.end());
    ++n_tensors_;
    return *this;
  }
  GgufWriter& alignment(uint32_t a) {
    alignment_ = a;
    return u32("general.alignment", a);
  }
  GgufWriter& claim_counts(uint64_t n_tensors, uint64_t n_kv) {
    forced_tensors_ = n_tensors;
    forced_kv_ = n_kv;
    return *this;
  }

  Bytes bytes() const {
    Bytes b = {'G', 'G', 'U', 'F'};
    put<uint32_t>(b, version_);
    put<uint64_t>(b, forced_tensors_ ? forced_tensors_ : n_tensors_);
    put<uint64_t>(b, forced_kv_ ? forced_kv_ : n_kv_);
    b.insert(b.end(), kv_.begin(), kv_.end());
    b.insert(b.end(), infos_.begin(), infos_.end());
    if (n_tensors_ > 0) {
      while (b.size() % alignment_ != 0) b.push_back(0);
      b.insert(b.end(), data_.begin(), data_.end());
    }
    return b;
  }
  void write(const std::filesystem::path& path) const { write_file(path, bytes()); }

 private:
  uint32_t version_;
  uint32_t alignment_ = 32;
  uint64_t n_kv_ = 0, n_tensors_ = 0, forced_tensors_ = 0, forced_kv_ = 0;
  Bytes kv_, infos_, data_;
};

}  // namespace ghostd::test
