#include "server/cli_commands.h"

#include <spdlog/spdlog.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <iterator>
#include <sstream>
#include <string_view>
#include <vector>

#include "runtime/model/model_loader.h"
#include "runtime/parallel/device_group.h"
#include "runtime/engine/sampling.h"

namespace ghostd::server {

using namespace ghostd::runtime;

namespace {

using Seconds = std::chrono::duration<double>;

// Minimal flag reader: --name value / -n value; unknown flags are errors.
struct Flags {
  std::span<char*> args;
  size_t i = 0;
  bool next(std::string_view& name) {
    if (i >= args.size()) return false;
    name = args[i++];
    return true;
  }
  bool value(std::string& out) {
    if (i >= args.size()) return false;
    out = args[i++];
    return true;
  }
};

int fail(const std::string& msg) {
  std::fprintf(stderr, "ghostd: %s\n", msg.c_str());
  return 1;
}

// A command line that cannot be run: exit code 2, as for `serve`.
int usage_error(const std::string& msg, const char* usage) {
  std::fprintf(stderr, "ghostd: %s\n%s", msg.c_str(), usage);
  return 2;
}

constexpr const char* kGenerateUsage =
    "usage: ghostd generate --model PATH --prompt TEXT [options]\n"
    "Generates text after PROMPT and prints prefill and decode speed.\n\n"
    "  --model PATH             model directory or .gguf file\n"
    "  --prompt TEXT            the text to continue\n"
    "  -n, --max-tokens N       new tokens (64)\n"
    "  --temperature T          0 is greedy (0)\n"
    "  --top-k K                sample from the K likeliest tokens (0: all)\n"
    "  --top-p P                nucleus sampling (1)\n"
    "  --seed S                 sampling seed\n"
    "  --threads N              CPU backend threads (0 = all cores)\n"
    "  --device DEV             cpu, cuda, cuda:N or auto (cpu)\n"
    "  --tensor-parallel N      shard the model over N ranks of --device\n"
    "  --devices LIST           one device per rank (cpu,cpu or cuda:0,cuda:1)\n"
    "  -h, --help               this text\n";

constexpr const char* kTokenizeUsage =
    "usage: ghostd tokenize --model PATH [--decode] [--no-special]\n"
    "Reads text on stdin and prints token ids (no BOS), or with --decode reads ids and prints text.\n\n"
    "  --model PATH             model directory, tokenizer.json or .gguf file (a vocabulary-only GGUF works)\n"
    "  --decode                 ids to text: ids separated by spaces, commas or newlines ([1, 2] works too);\n"
    "                           the exact bytes, the inverse of tokenize (a SentencePiece vocabulary's\n"
    "                           leading space is dropped, as Hugging Face's decode does); a character\n"
    "                           split across tokens comes out whole, an incomplete one at the end as its\n"
    "                           bytes, as the streaming decoder does\n"
    "  --no-special             text: do not parse special tokens; --decode: leave special tokens out\n"
    "  -h, --help               this text\n";

}  // namespace

int run_generate(std::span<char*> args) {
  std::string model_path, prompt, v, device = "cpu", devices;
  int n_predict = 64, threads = 0, tensor_parallel = 0;
  SamplingParams sp;
  Flags f{args};
  for (std::string_view name; f.next(name);) {
    bool ok = true;
    if (name == "--help" || name == "-h") {
      std::fputs(kGenerateUsage, stdout);
      return 0;
    }
    if (name == "--model") ok = f.value(model_path);
    else if (name == "--prompt") ok = f.value(prompt);
    else if (name == "-n" || name == "--max-tokens") ok = f.value(v) && (n_predict = std::atoi(v.c_str()), true);
    else if (name == "--temperature") ok = f.value(v) && (sp.temperature = std::strtof(v.c_str(), nullptr), true);
    else if (name == "--top-k") ok = f.value(v) && (sp.top_k = std::atoi(v.c_str()), true);
    else if (name == "--top-p") ok = f.value(v) && (sp.top_p = std::strtof(v.c_str(), nullptr), true);
    else if (name == "--seed") ok = f.value(v) && (sp.seed = std::strtoull(v.c_str(), nullptr, 10), true);
    else if (name == "--threads") ok = f.value(v) && (threads = std::atoi(v.c_str()), true);
    else if (name == "--device") ok = f.value(device);
    else if (name == "--devices") ok = f.value(devices);
    else if (name == "--tensor-parallel") ok = f.value(v) && (tensor_parallel = std::atoi(v.c_str()), true);
    else return usage_error("generate: unknown flag " + std::string(name), kGenerateUsage);
    if (!ok) return usage_error("generate: " + std::string(name) + " needs a value", kGenerateUsage);
  }
  if (model_path.empty()) return usage_error("generate: --model PATH is required", kGenerateUsage);
  if (n_predict < 0) return usage_error("generate: -n must be >= 0", kGenerateUsage);

  auto ranks = resolve_devices(devices, tensor_parallel, device);
  if (!ranks) return fail("generate: " + ranks.error().message);
  auto made = make_device_group(*ranks, {.cpu_threads = threads});
  if (!made) return fail("generate: " + made.error().message);
  DeviceGroup group = std::move(*made);
  auto t0 = std::chrono::steady_clock::now();
  auto loaded = load_model(model_path, group.backend_list(), group.comm_list(), true, [](double frac, std::string_view what) {
    spdlog::info("loading model: {:3.0f}% {}", frac * 100, what);
  });
  if (!loaded) return fail(loaded.error().message);
  spdlog::info("loaded {} ({} layers, hidden {}) in {:.2f} s on {}{}", model_path,
               loaded->config.num_layers, loaded->config.hidden_size,
               Seconds(std::chrono::steady_clock::now() - t0).count(), group.backends[0]->name(),
               group.size() > 1 ? " x " + std::to_string(group.size()) + " tensor-parallel ranks" : std::string());
  Model& model = *loaded->model;
  const Tokenizer& tok = *loaded->tokenizer;
  const ModelConfig& c = loaded->config;

  std::vector<int32_t> tokens;
  // The vocabulary says whether sequences start with BOS (Llama's and Gemma's
  // do; their models expect it), as the server's prompts do.
  if (tok.add_bos_default() && tok.bos_id() >= 0) tokens.push_back(tok.bos_id());
  auto enc = tok.encode(prompt);
  tokens.insert(tokens.end(), enc.begin(), enc.end());
  if (tokens.empty()) return fail("generate: the prompt is empty (and the model has no BOS token)");
  const int total = static_cast<int>(tokens.size()) + n_predict;
  if (c.max_position_embeddings > 0 && total > c.max_position_embeddings)
    return fail("generate: prompt plus -n is " + std::to_string(total) +
                " tokens, beyond the model's context of " + std::to_string(c.max_position_embeddings));
  const int bs = 16, nblocks = (total + bs - 1) / bs;
  auto kv = KvStorage::create(model, nblocks, bs);
  if (!kv) return fail(kv.error().message);
  std::vector<int32_t> table(nblocks);
  for (int i = 0; i < nblocks; ++i) table[i] = i;

  Sampler sampler(sp);
  StreamDecoder out(tok);
  std::vector<float> logits;
  std::fputs(prompt.c_str(), stdout);
  std::fflush(stdout);
  auto tp = std::chrono::steady_clock::now();
  SequenceInput in{tokens, 0, table, false};
  // The prefill is the largest step; decode steps fit in what it reserves.
  if (auto st = model.reserve(Model::capacity_for(std::span(&in, 1))); !st) return fail(st.message());
  if (auto st = model.forward(std::span(&in, 1), *kv, logits); !st) return fail(st.message());
  auto td = std::chrono::steady_clock::now();
  const double prefill_s = Seconds(td - tp).count();
  int generated = 0;
  std::vector<int32_t> seq = tokens;
  while (generated < n_predict) {
    int32_t next = sampler.sample(logits);
    bool stop = false;
    for (int32_t e : c.eos_token_ids) stop |= next == e;
    if (stop) break;
    seq.push_back(next);
    ++generated;
    std::string piece = out.push(next);
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
    if (generated == n_predict) break;
    SequenceInput step{std::span<const int32_t>(&seq.back(), 1), static_cast<int32_t>(seq.size() - 1), table, false};
    if (auto st = model.forward(std::span(&step, 1), *kv, logits); !st) return fail(st.message());
  }
  std::string rest = out.flush();
  std::fwrite(rest.data(), 1, rest.size(), stdout);
  std::fputc('\n', stdout);
  const double decode_s = Seconds(std::chrono::steady_clock::now() - td).count();
  std::fprintf(stderr, "prefill: %zu tokens in %.1f ms (%.1f tokens/s)\n", tokens.size(), prefill_s * 1e3,
               tokens.size() / std::max(prefill_s, 1e-9));
  std::fprintf(stderr, "decode: %d tokens in %.1f ms (%.1f tokens/s)\n", generated, decode_s * 1e3,
               generated / std::max(decode_s, 1e-9));
  return 0;
}

int run_tokenize(std::span<char*> args) {
  std::string model_path;
  bool decode = false, no_special = false;
  Flags f{args};
  for (std::string_view name; f.next(name);) {
    if (name == "--help" || name == "-h") {
      std::fputs(kTokenizeUsage, stdout);
      return 0;
    }
    if (name == "--model") {
      if (!f.value(model_path)) return usage_error("tokenize: --model needs a value", kTokenizeUsage);
    } else if (name == "--decode") {
      decode = true;
    } else if (name == "--no-special") {
      no_special = true;
    } else {
      return usage_error("tokenize: unknown flag " + std::string(name), kTokenizeUsage);
    }
  }
  if (model_path.empty()) return usage_error("tokenize: --model PATH is required", kTokenizeUsage);
  auto tok = load_tokenizer(model_path);
  if (!tok) return fail(tok.error().message);
  std::string input((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
  if (decode) {
    // Separators: whitespace, and the commas and brackets of a printed list.
    for (char& c : input) {
      if (c == ',' || c == '[' || c == ']') c = ' ';
    }
    std::vector<int32_t> ids;
    std::istringstream is(input);
    for (std::string w; is >> w;) {
      char* end = nullptr;
      errno = 0;
      long id = std::strtol(w.c_str(), &end, 10);
      if (*end != '\0' || errno != 0 || id < 0 || static_cast<size_t>(id) >= (*tok)->vocab_size())
        return fail("tokenize --decode: \"" + w + "\" is not a token id of this vocabulary (0.." +
                    std::to_string((*tok)->vocab_size() - 1) + ")");
      ids.push_back(static_cast<int32_t>(id));
    }
    // Specials left out first, so that the leading-space rule sees the first
    // token shown (HF's decode with skip_special_tokens).
    if (no_special) std::erase_if(ids, [&](int32_t id) { return (*tok)->is_special(id); });
    // decode_text: the bytes of every token in order (what StreamDecoder
    // yields once flushed), less the space SentencePiece put in front.
    std::string text = (*tok)->decode_text(ids);
    std::fwrite(text.data(), 1, text.size(), stdout);
    return 0;
  }
  auto ids = (*tok)->encode(input, !no_special);
  for (size_t i = 0; i < ids.size(); ++i) std::printf(i ? " %d" : "%d", ids[i]);
  std::printf("\n");
  return 0;
}

}  // namespace ghostd::server
