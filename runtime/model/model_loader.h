// Loads a model for serving: config, memory-mapped weights, tokenizer and the
// forward pass bound to a backend, from an HF directory or a GGUF file.
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

#include "runtime/core/backend.h"
#include "runtime/model/model.h"
#include "runtime/model/model_config.h"
#include "runtime/core/result.h"
#include "runtime/tokenizer/tokenizer.h"
#include "runtime/model/weights.h"

namespace ghostd::runtime {

// Progress of long loads: fraction in [0, 1] and what is being done.
using LoadProgress = std::function<void(double fraction, std::string_view what)>;

// Thread-safety: immutable after loading, except `model`, which belongs to
// the engine thread.
struct LoadedModel {
  std::filesystem::path path;
  ModelConfig config;
  std::unique_ptr<WeightStore> weights;
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<Model> model;
  // Per mapped file, when a backend reads weights in place (MappedFile::settle).
  std::vector<std::pair<std::filesystem::path, PageCacheReport>> page_cache;
};

// The tokenizer alone: tokenizer.json of an HF directory, or the
// tokenizer.ggml.* metadata of a GGUF file (vocabulary-only files too).
Result<std::unique_ptr<Tokenizer>> load_tokenizer(const std::filesystem::path& path);

// The config alone (HF config.json, or GGUF metadata).
Result<ModelConfig> load_config(const std::filesystem::path& path);

// Everything. With `need_tokenizer` false a model without tokenizer files
// loads (reference tests feed token ids).
Result<LoadedModel> load_model(const std::filesystem::path& path, Backend& backend,
                               bool need_tokenizer = true, const LoadProgress& progress = {});
// Tensor parallel: rank r on backends[r] with comms[r] (see Model::create).
Result<LoadedModel> load_model(const std::filesystem::path& path, std::span<Backend* const> backends,
                               std::span<Communicator* const> comms, bool need_tokenizer = true,
                               const LoadProgress& progress = {});

}  // namespace ghostd::runtime
