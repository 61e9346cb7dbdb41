// Parser for the safetensors format: an 8-byte little-endian header length,
// a JSON header {name: {dtype, shape, data_offsets}}, then the tensor bytes.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/core/mapped_file.h"
#include "runtime/core/result.h"
#include "runtime/core/tensor.h"

namespace ghostd::runtime {

// Views of every tensor in `file` (in header order), pointing into its
// mapping; they stay valid while `file` lives. Validates the header length,
// the JSON, dtypes (F32, F16, BF16), shapes, and that every tensor's byte
// range lies inside the file, matches shape * dtype size and overlaps no
// other. Errors name the file and the tensor.
Result<std::vector<TensorView>> parse_safetensors(const MappedFile& file);

// Parses JSON, rejecting duplicate keys in any object (nlohmann would keep
// only one silently). `what` names the source in the error.
Result<nlohmann::json> parse_json_unique_keys(std::string_view text, const std::string& what);

}  // namespace ghostd::runtime
