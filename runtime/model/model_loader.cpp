#include "runtime/model/model_loader.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "runtime/model/gguf.h"

namespace ghostd::runtime {

namespace fs = std::filesystem;

namespace {

bool is_gguf_path(const fs::path& p) { return fs::is_regular_file(p) && p.extension() == ".gguf"; }

Result<std::unique_ptr<Tokenizer>> tokenizer_from_gguf(const GgufFile& g, const fs::path& p) {
  VocabSpec spec;
  spec.origin = p.string();
  auto tokens = g.get_string_array("tokenizer.ggml.tokens");
  if (!tokens) return Error{p.string() + ": missing tokenizer.ggml.tokens (expected a string array)"};
  spec.tokens = std::move(*tokens);
  spec.model = g.get_string("tokenizer.ggml.model").value_or("gpt2");
  if (auto types = g.get_int_array("tokenizer.ggml.token_type")) {
    spec.token_types.assign(types->begin(), types->end());
  }
  if (const GgufValue* scores = g.find("tokenizer.ggml.scores")) {
    if (scores->type() != GgufType::kArray) return Error{p.string() + ": tokenizer.ggml.scores: expected an array"};
    spec.scores.resize(scores->array_size());
    for (size_t i = 0; i < spec.scores.size(); ++i) {
      auto v = scores->float_at(i);
      if (!v) return Error{p.string() + ": tokenizer.ggml.scores[" + std::to_string(i) + "]: expected a number"};
      spec.scores[i] = static_cast<float>(*v);
    }
  }
  if (auto merges = g.get_string_array("tokenizer.ggml.merges")) spec.merges = std::move(*merges);
  spec.pre = g.get_string("tokenizer.ggml.pre").value_or("default");
  if (auto b = g.get_int("tokenizer.ggml.bos_token_id")) spec.bos_id = static_cast<int32_t>(*b);
  if (auto e = g.get_int("tokenizer.ggml.eos_token_id")) spec.eos_id = static_cast<int32_t>(*e);
  if (auto u = g.get_int("tokenizer.ggml.unknown_token_id")) spec.unk_id = static_cast<int32_t>(*u);
  if (const GgufValue* v = g.find("tokenizer.ggml.add_bos_token")) spec.add_bos = v->as_bool();
  if (spec.model == "llama") {
    if (const GgufValue* v = g.find("tokenizer.ggml.add_space_prefix")) spec.add_space_prefix = v->as_bool();
  }
  auto tok = Tokenizer::from_vocab(spec);
  if (!tok) return tok.error();
  return std::make_unique<Tokenizer>(std::move(*tok));
}

}  // namespace

Result<std::unique_ptr<Tokenizer>> load_tokenizer(const fs::path& path) {
  if (is_gguf_path(path)) {
    auto g = GgufFile::open(path);
    if (!g) return g.error();
    return tokenizer_from_gguf(*g, path);
  }
  if (!fs::is_directory(path))
    return Error{path.string() + ": expected a model directory or a .gguf file"};
  auto tok = Tokenizer::from_hf_json(path / "tokenizer.json");
  if (!tok) return tok.error();
  return std::make_unique<Tokenizer>(std::move(*tok));
}

Result<ModelConfig> load_config(const fs::path& path) {
  if (is_gguf_path(path)) {
    auto g = GgufFile::open(path);
    if (!g) return g.error();
    return config_from_gguf(*g);
  }
  if (!fs::exists(path)) return Error{path.string() + ": no such file or directory"};
  return parse_hf_config(path);
}

Result<LoadedModel> load_model(const fs::path& path, Backend& backend, bool need_tokenizer,
                               const LoadProgress& progress) {
  Backend* one[] = {&backend};
  return load_model(path, one, {}, need_tokenizer, progress);
}

Result<LoadedModel> load_model(const fs::path& path, std::span<Backend* const> backends,
                               std::span<Communicator* const> comms, bool need_tokenizer,
                               const LoadProgress& progress) {
  auto report = [&](double f, std::string_view what) {
    if (progress) progress(f, what);
  };
  LoadedModel m;
  m.path = path;
  report(0.0, "reading config");
  auto cfg = load_config(path);
  if (!cfg) return cfg.error();
  m.config = std::move(*cfg);
  report(0.1, "mapping weights");
  auto ws = WeightStore::open(path);
  if (!ws) return ws.error();
  m.weights = std::make_unique<WeightStore>(std::move(*ws));
  report(0.3, "loading tokenizer");
  auto tok = load_tokenizer(path);
  if (tok) {
    m.tokenizer = std::move(*tok);
    if (m.tokenizer->vocab_size() > static_cast<size_t>(m.config.vocab_size))
      return Error{path.string() + ": tokenizer has " + std::to_string(m.tokenizer->vocab_size()) +
                   " tokens, more than the model's vocab_size " +
                   std::to_string(m.config.vocab_size)};
  } else if (need_tokenizer) {
    return tok.error();
  } else {
    spdlog::debug("no tokenizer: {}", tok.error().message);
  }
  if (std::any_of(backends.begin(), backends.end(), [](Backend* b) { return b->reads_weights_in_place(); })) {
    report(0.35, "reading weights into memory");
    m.page_cache = m.weights->settle();
    for (const auto& [file, r] : m.page_cache) {
      if (!r.measured) continue;
      const double mb = 1.0 / (1 << 20);
      if (r.huge == 0) {
        spdlog::info("{}: {:.0f} MiB read in on 4 KiB pages in {:.2f} s (the page cache holds it in small pages "
                     "here; GHOSTD_CPU_WEIGHTS=huge copies weights onto 2 MiB pages)",
                     file.string(), r.bytes * mb, r.seconds);
      } else if (r.refreshed) {
        spdlog::info("{}: {:.0f} of {:.0f} MiB on 2 MiB pages after re-reading the page cache ({:.0f} before; "
                     "{:.2f} s)", file.string(), r.huge * mb, r.bytes * mb, r.huge_before * mb, r.seconds);
      } else {
        spdlog::info("{}: {:.0f} of {:.0f} MiB on 2 MiB pages ({:.2f} s)", file.string(), r.huge * mb,
                     r.bytes * mb, r.seconds);
      }
    }
  }
  report(0.4, "binding weights");
  auto model = Model::create(m.config, *m.weights, backends, comms);
  if (!model) return Error{path.string() + ": " + model.error().message};
  m.model = std::move(*model);
  report(1.0, "ready");
  return m;
}

}  // namespace ghostd::runtime
