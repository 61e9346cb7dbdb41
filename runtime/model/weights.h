// All weights of one model, by Hugging Face tensor name, from a safetensors
// directory (single file or sharded) or a GGUF file.
#pragma once

#include <cstddef>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "runtime/model/gguf.h"
#include "runtime/core/mapped_file.h"
#include "runtime/core/result.h"
#include "runtime/core/tensor.h"

namespace ghostd::runtime {

// The Hugging Face name of a GGUF tensor ("blk.3.attn_q.weight" ->
// "model.layers.3.self_attn.q_proj.weight"); names without a counterpart
// (e.g. "rope_freqs.weight") come back unchanged.
std::string hf_name_from_gguf(std::string_view gguf_name);

// Owns the file mappings (and the few tensors it had to copy: llama GGUF Q/K
// rows un-permuted back to HF's rotate_half order, and misaligned safetensors
// data); views stay valid while the store lives, across moves.
// Thread-safety: immutable after open; const methods may run concurrently.
class WeightStore {
 public:
  // `path`: a HF model directory (model.safetensors, or the shards listed in
  // model.safetensors.index.json), a .safetensors file, or a .gguf file.
  static Result<WeightStore> open(const std::filesystem::path& path);

  WeightStore(WeightStore&&) noexcept = default;
  WeightStore& operator=(WeightStore&&) noexcept = default;
  WeightStore(const WeightStore&) = delete;
  WeightStore& operator=(const WeightStore&) = delete;

  const TensorView* find(std::string_view hf_name) const;
  // The tensor, if present with exactly `shape` (PyTorch order); the error
  // names the tensor, its file, and the expected and actual shapes.
  Result<const TensorView*> require(std::string_view hf_name, std::vector<int64_t> shape) const;
  std::vector<std::string> names() const;  // sorted
  bool is_gguf() const { return gguf_ != nullptr; }
  const GgufFile* gguf() const { return gguf_.get(); }
  const std::filesystem::path& path() const { return path_; }

  // MappedFile::settle on every mapped file, for backends that read weights in
  // place (Backend::reads_weights_in_place); not while anything reads them.
  std::vector<std::pair<std::filesystem::path, PageCacheReport>> settle();

 private:
  struct Entry {
    TensorView view;
    std::string file;  // for error messages
  };
  WeightStore() = default;
  Status add(TensorView view, const std::string& file);
  Status load_safetensors(const std::filesystem::path& file);
  Status load_index(const std::filesystem::path& index_path);
  Status load_gguf(const std::filesystem::path& file);

  std::filesystem::path path_;
  std::vector<MappedFile> files_;
  std::unique_ptr<GgufFile> gguf_;
  std::vector<std::unique_ptr<std::byte[]>> owned_;
  std::map<std::string, Entry, std::less<>> tensors_;
};

}  // namespace ghostd::runtime
