#include "runtime/model/weights.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include "runtime/model/safetensors.h"

namespace ghostd::runtime {
namespace {

size_t element_alignment(DType dtype) {
  switch (dtype) {
    case DType::kF32: return 4;
    case DType::kF16:
    case DType::kBF16:
    case DType::kQ8_0: return 2;  // Q8_0 blocks start with an f16 scale
    // ggml's other blocks are byte arrays with f16 fields at even offsets; the
    // kernels read them with memcpy, so no stricter alignment is needed.
    case DType::kQ4_0:
    case DType::kQ4_1:
    case DType::kQ5_0:
    case DType::kQ5_1:
    case DType::kQ4_K:
    case DType::kQ5_K:
    case DType::kQ6_K: return 2;
  }
  return 1;
}

bool has_gguf_magic(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  return in.read(magic, 4) && std::memcmp(magic, "GGUF", 4) == 0;
}

// llama.cpp's converter reorders the rows of each head of attn_q/attn_k from
// HF's halves ([x0..x(d/2-1)], [x(d/2)..]) to interleaved pairs. GGUF row
// h*d + 2i + j holds HF row h*d + j*d/2 + i; this writes them back.
void unpermute_rows(const std::byte* src, std::byte* dst, int64_t rows, size_t row_bytes, int64_t n_head) {
  const int64_t d = rows / n_head;
  const int64_t half = d / 2;
  for (int64_t h = 0; h < n_head; ++h) {
    for (int64_t i = 0; i < half; ++i) {
      for (int64_t j = 0; j < 2; ++j) {
        const int64_t from = h * d + 2 * i + j;
        const int64_t to = h * d + j * half + i;
        std::memcpy(dst + to * row_bytes, src + from * row_bytes, row_bytes);
      }
    }
  }
}

}  // namespace

std::string hf_name_from_gguf(std::string_view name) {
  static constexpr std::pair<std::string_view, std::string_view> kGlobal[] = {
      {"token_embd", "model.embed_tokens"}, {"output_norm", "model.norm"}, {"output", "lm_head"}};
  static constexpr std::pair<std::string_view, std::string_view> kLayer[] = {
      {"attn_q", "self_attn.q_proj"},   {"attn_k", "self_attn.k_proj"},
      {"attn_v", "self_attn.v_proj"},   {"attn_output", "self_attn.o_proj"},
      {"ffn_gate", "mlp.gate_proj"},    {"ffn_up", "mlp.up_proj"},
      {"ffn_down", "mlp.down_proj"},    {"attn_norm", "input_layernorm"},
      {"ffn_norm", "post_attention_layernorm"}};
  const size_t dot = name.rfind('.');
  if (dot == std::string_view::npos) return std::string(name);
  const std::string_view stem = name.substr(0, dot);
  const std::string_view suffix = name.substr(dot);  // ".weight" / ".bias"
  for (const auto& [g, h] : kGlobal) {
    if (stem == g) return std::string(h) + std::string(suffix);
  }
  if (stem.substr(0, 4) == "blk.") {
    const size_t layer_end = stem.find('.', 4);
    if (layer_end != std::string_view::npos && layer_end > 4) {
      const std::string_view layer = stem.substr(4, layer_end - 4);
      const std::string_view part = stem.substr(layer_end + 1);
      if (layer.find_first_not_of("0123456789") == std::string_view::npos) {
        for (const auto& [g, h] : kLayer) {
          if (part == g) {
            return "model.layers." + std::string(layer) + "." + std::string(h) + std::string(suffix);
          }
        }
      }
    }
  }
  return std::string(name);
}

Result<WeightStore> WeightStore::open(const std::filesystem::path& path) {
  WeightStore store;
  store.path_ = path;
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    const auto index = path / "model.safetensors.index.json";
    const auto single = path / "model.safetensors";
    if (std::filesystem::exists(index, ec)) {
      GHOSTD_TRY_STATUS(store.load_index(index));
    } else if (std::filesystem::exists(single, ec)) {
      GHOSTD_TRY_STATUS(store.load_safetensors(single));
    } else {
      return Error{path.string() + ": no model.safetensors or model.safetensors.index.json in the directory"};
    }
  } else if (!std::filesystem::exists(path, ec)) {
    return Error{"cannot open " + path.string() + ": no such file or directory"};
  } else if (has_gguf_magic(path)) {
    GHOSTD_TRY_STATUS(store.load_gguf(path));
  } else if (path.string().ends_with(".index.json")) {
    GHOSTD_TRY_STATUS(store.load_index(path));
  } else if (path.extension() == ".safetensors") {
    GHOSTD_TRY_STATUS(store.load_safetensors(path));
  } else {
    return Error{path.string() + ": not a model directory, .safetensors file or GGUF file"};
  }
  return store;
}

std::vector<std::pair<std::filesystem::path, PageCacheReport>> WeightStore::settle() {
  std::vector<std::pair<std::filesystem::path, PageCacheReport>> out;
  for (auto& f : files_) out.emplace_back(f.path(), f.settle());
  if (gguf_) out.emplace_back(gguf_->path(), gguf_->mapped_file().settle());
  return out;
}

Status WeightStore::add(TensorView view, const std::string& file) {
  // Kernels read elements in place; copy the rare tensor whose file offset
  // leaves it misaligned (safetensors headers need not pad to 8).
  if (reinterpret_cast<uintptr_t>(view.data) % element_alignment(view.dtype) != 0) {
    auto buf = std::make_unique<std::byte[]>(view.nbytes);
    std::memcpy(buf.get(), view.data, view.nbytes);
    view.data = buf.get();
    owned_.push_back(std::move(buf));
  }
  std::string name = view.name;
  auto [it, inserted] = tensors_.try_emplace(std::move(name), Entry{std::move(view), file});
  if (!inserted) {
    return Error{"tensor '" + it->first + "' appears twice: in " + it->second.file + " and " + file};
  }
  return {};
}

Status WeightStore::load_safetensors(const std::filesystem::path& file) {
  auto mapped = MappedFile::open(file);
  if (!mapped.ok()) return std::move(mapped).take_error();
  files_.push_back(std::move(mapped).value());
  auto views = parse_safetensors(files_.back());
  if (!views.ok()) return std::move(views).take_error();
  for (auto& v : *views) GHOSTD_TRY_STATUS(add(std::move(v), file.string()));
  return {};
}

Status WeightStore::load_index(const std::filesystem::path& index_path) {
  const std::string iname = index_path.string();
  std::ifstream in(index_path, std::ios::binary);
  if (!in) return Error{"cannot read " + iname};
  std::stringstream ss;
  ss << in.rdbuf();
  auto parsed = parse_json_unique_keys(ss.str(), iname);
  if (!parsed.ok()) return std::move(parsed).take_error();
  const auto wm = parsed->find("weight_map");
  if (!parsed->is_object() || wm == parsed->end() || !wm->is_object()) {
    return Error{iname + ": missing object field 'weight_map'"};
  }
  std::map<std::string, std::string, std::less<>> shard_of;
  std::vector<std::string> shards;  // in first-mention order
  for (const auto& [tensor, shard] : wm->items()) {
    if (!shard.is_string()) return Error{iname + ": weight_map entry for '" + tensor + "' is not a file name"};
    const std::string s = shard.get<std::string>();
    const std::filesystem::path sp(s);
    if (s.empty() || sp.is_absolute() || s.find("..") != std::string::npos) {
      return Error{iname + ": weight_map entry for '" + tensor + "' names an invalid shard '" + s + "'"};
    }
    if (std::find(shards.begin(), shards.end(), s) == shards.end()) shards.push_back(s);
    shard_of.emplace(tensor, s);
  }
  const auto dir = index_path.parent_path();
  for (const auto& shard : shards) {
    const auto shard_path = dir / shard;
    if (!std::filesystem::exists(shard_path)) {
      return Error{iname + ": shard '" + shard + "' is missing (" + shard_path.string() + ")"};
    }
    auto mapped = MappedFile::open(shard_path);
    if (!mapped.ok()) return std::move(mapped).take_error();
    files_.push_back(std::move(mapped).value());
    auto views = parse_safetensors(files_.back());
    if (!views.ok()) return std::move(views).take_error();
    for (auto& v : *views) {
      auto it = shard_of.find(v.name);
      if (it != shard_of.end() && it->second != shard) {
        return Error{"tensor '" + v.name + "' is in shard " + shard_path.string() + " but " + iname +
                     " maps it to '" + it->second + "'"};
      }
      GHOSTD_TRY_STATUS(add(std::move(v), shard_path.string()));
    }
  }
  for (const auto& [tensor, shard] : shard_of) {
    if (tensors_.find(tensor) == tensors_.end()) {
      return Error{iname + ": tensor '" + tensor + "' is missing from its shard " + (dir / shard).string()};
    }
  }
  return {};
}

Status WeightStore::load_gguf(const std::filesystem::path& file) {
  auto g = GgufFile::open(file);
  if (!g.ok()) return std::move(g).take_error();
  gguf_ = std::make_unique<GgufFile>(std::move(g).value());
  const std::string fname = file.string();
  const auto arch = gguf_->get_string("general.architecture");
  const bool permuted = arch == "llama";
  // StarCoder2's non-gated MLP: GGUF ffn_up / ffn_down are HF's c_fc / c_proj.
  const bool starcoder2 = arch == "starcoder2";
  const auto n_head = gguf_->get_int("llama.attention.head_count");
  const auto n_kv_head = gguf_->get_int("llama.attention.head_count_kv");
  for (const TensorView& t : gguf_->tensors()) {
    TensorView v = t;
    v.name = hf_name_from_gguf(t.name);
    if (starcoder2) {
      for (const auto& [from, to] : {std::pair{".mlp.up_proj.", ".mlp.c_fc."}, std::pair{".mlp.down_proj.", ".mlp.c_proj."}}) {
        if (const size_t at = v.name.find(from); at != std::string::npos) v.name.replace(at, std::strlen(from), to);
      }
    }
    const bool is_q = v.name.find(".self_attn.q_proj.") != std::string::npos;
    const bool is_k = v.name.find(".self_attn.k_proj.") != std::string::npos;
    if (permuted && (is_q || is_k)) {
      const std::optional<int64_t> heads = is_q ? n_head : (n_kv_head ? n_kv_head : n_head);
      const int64_t rows = v.shape.empty() ? 0 : v.shape[0];
      if (!heads || *heads <= 0) {
        return Error{fname + ": tensor '" + t.name + "' needs llama.attention.head_count to undo its row permutation"};
      }
      if (rows == 0 || rows % *heads != 0 || (rows / *heads) % 2 != 0) {
        return Error{fname + ": tensor '" + t.name + "' has " + std::to_string(rows) + " rows, not " +
                     std::to_string(*heads) + " heads of an even size"};
      }
      auto buf = std::make_unique<std::byte[]>(v.nbytes);
      unpermute_rows(t.data, buf.get(), rows, v.nbytes / static_cast<size_t>(rows), *heads);
      v.data = buf.get();
      owned_.push_back(std::move(buf));
    }
    GHOSTD_TRY_STATUS(add(std::move(v), fname));
  }
  return {};
}

const TensorView* WeightStore::find(std::string_view hf_name) const {
  auto it = tensors_.find(hf_name);
  return it == tensors_.end() ? nullptr : &it->second.view;
}

Result<const TensorView*> WeightStore::require(std::string_view hf_name, std::vector<int64_t> shape) const {
  auto it = tensors_.find(hf_name);
  if (it == tensors_.end()) {
    return Error{path_.string() + ": tensor '" + std::string(hf_name) + "' not found (expected shape " +
                 shape_string(shape) + ")"};
  }
  const TensorView& v = it->second.view;
  if (v.shape != shape) {
    return Error{it->second.file + ": tensor '" + it->first + "' has shape " + shape_string(v.shape) +
                 ", expected " + shape_string(shape)};
  }
  return &v;
}

std::vector<std::string> WeightStore::names() const {
  std::vector<std::string> out;
  out.reserve(tensors_.size());
  for (const auto& [name, entry] : tensors_) out.push_back(name);
  return out;
}

}  // namespace ghostd::runtime
