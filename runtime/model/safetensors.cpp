#include "runtime/model/safetensors.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <set>

namespace ghostd::runtime {
namespace {

bool dtype_from_safetensors(std::string_view s, DType* out) {
  if (s == "F32") *out = DType::kF32;
  else if (s == "F16") *out = DType::kF16;
  else if (s == "BF16") *out = DType::kBF16;
  else return false;
  return true;
}

// Reads a non-negative integer JSON value that fits in uint64.
bool get_u64(const nlohmann::json& j, uint64_t* out) {
  if (j.is_number_unsigned()) {
    *out = j.get<uint64_t>();
    return true;
  }
  if (j.is_number_integer() && j.get<int64_t>() >= 0) {
    *out = static_cast<uint64_t>(j.get<int64_t>());
    return true;
  }
  return false;
}

}  // namespace

Result<nlohmann::json> parse_json_unique_keys(std::string_view text, const std::string& what) {
  std::vector<std::set<std::string>> keys;  // one set per open object
  std::string duplicate;
  auto cb = [&](int /*depth*/, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    using E = nlohmann::json::parse_event_t;
    if (event == E::object_start) {
      keys.emplace_back();
    } else if (event == E::object_end) {
      if (!keys.empty()) keys.pop_back();
    } else if (event == E::key && !keys.empty() && parsed.is_string()) {
      if (!keys.back().insert(parsed.get<std::string>()).second && duplicate.empty()) {
        duplicate = parsed.get<std::string>();
      }
    }
    return true;
  };
  nlohmann::json j = nlohmann::json::parse(text.begin(), text.end(), cb, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Error{what + ": not valid JSON"};
  if (!duplicate.empty()) return Error{what + ": key '" + duplicate + "' appears twice"};
  return j;
}

Result<std::vector<TensorView>> parse_safetensors(const MappedFile& file) {
  const std::string fname = file.path().string();
  const auto bytes = file.bytes();
  if (bytes.size() < 8) {
    return Error{fname + ": truncated safetensors file (" + std::to_string(bytes.size()) +
                 " bytes, expected at least the 8-byte header length)"};
  }
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = header_len << 8 | static_cast<uint8_t>(bytes[i]);
  if (header_len > bytes.size() - 8) {
    return Error{fname + ": header length " + std::to_string(header_len) +
                 " goes beyond the end of the file (" + std::to_string(bytes.size()) + " bytes)"};
  }
  const std::string_view header_text(reinterpret_cast<const char*>(bytes.data() + 8), header_len);
  auto parsed = parse_json_unique_keys(header_text, fname + ": safetensors header");
  if (!parsed.ok()) return std::move(parsed).take_error();
  const nlohmann::json& header = *parsed;
  if (!header.is_object()) return Error{fname + ": safetensors header is not a JSON object"};

  const std::byte* data = bytes.data() + 8 + header_len;
  const uint64_t data_size = bytes.size() - 8 - header_len;
  struct Range {
    uint64_t begin, end;
    size_t index;
  };
  std::vector<Range> ranges;
  std::vector<TensorView> views;
  views.reserve(header.size());
  for (const auto& [name, info] : header.items()) {
    if (name == "__metadata__") continue;
    const std::string where = fname + ": tensor '" + name + "'";
    if (!info.is_object()) return Error{where + ": entry is not an object"};
    const auto dt = info.find("dtype");
    const auto sh = info.find("shape");
    const auto off = info.find("data_offsets");
    if (dt == info.end() || !dt->is_string()) return Error{where + ": missing string field 'dtype'"};
    TensorView v;
    v.name = name;
    if (!dtype_from_safetensors(dt->get<std::string>(), &v.dtype)) {
      return Error{where + ": unsupported dtype '" + dt->get<std::string>() +
                   "' (expected F32, F16 or BF16)"};
    }
    if (sh == info.end() || !sh->is_array()) return Error{where + ": missing array field 'shape'"};
    uint64_t numel = 1;
    bool overflow = false;
    for (const auto& d : *sh) {
      uint64_t n = 0;
      if (!get_u64(d, &n) || n > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return Error{where + ": shape " + sh->dump() + " must hold non-negative integers"};
      }
      v.shape.push_back(static_cast<int64_t>(n));
      if (n != 0 && numel > std::numeric_limits<uint64_t>::max() / 8 / n) overflow = true;
      numel *= n;
    }
    if (off == info.end() || !off->is_array() || off->size() != 2) {
      return Error{where + ": missing field 'data_offsets' [begin, end]"};
    }
    uint64_t begin = 0, end = 0;
    if (!get_u64((*off)[0], &begin) || !get_u64((*off)[1], &end) || begin > end) {
      return Error{where + ": data_offsets " + off->dump() + " must be [begin, end] with begin <= end"};
    }
    if (end > data_size) {
      return Error{where + ": data_offsets " + off->dump() + " go beyond the data section (" +
                   std::to_string(data_size) + " bytes; file truncated?)"};
    }
    const uint64_t expected = overflow ? std::numeric_limits<uint64_t>::max()
                                       : dtype_bytes(v.dtype, static_cast<int64_t>(numel));
    if (overflow || end - begin != expected) {
      return Error{where + ": data_offsets " + off->dump() + " span " + std::to_string(end - begin) +
                   " bytes but shape " + shape_string(v.shape) + " of " + dtype_name(v.dtype) +
                   " needs " + (overflow ? std::string("more than 2^64") : std::to_string(expected))};
    }
    v.data = data + begin;
    v.nbytes = static_cast<size_t>(end - begin);
    ranges.push_back({begin, end, views.size()});
    views.push_back(std::move(v));
  }
  std::sort(ranges.begin(), ranges.end(),
            [](const Range& a, const Range& b) { return a.begin < b.begin || (a.begin == b.begin && a.end < b.end); });
  // Empty tensors take no bytes and cannot overlap anything; `last` is the
  // non-empty range reaching furthest so far.
  const Range* last = nullptr;
  for (const Range& r : ranges) {
    if (r.begin == r.end) continue;
    if (last != nullptr && r.begin < last->end) {
      return Error{fname + ": tensors '" + views[last->index].name + "' and '" + views[r.index].name +
                   "' have overlapping data_offsets"};
    }
    if (last == nullptr || r.end > last->end) last = &r;
  }
  return views;
}

}  // namespace ghostd::runtime
