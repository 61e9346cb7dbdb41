// bench_tokenizer_encode [FILE] [--model tokenizer.json | --vocab file.gguf]
// Encodes a large source text on one thread and prints MB/s and tokens/s
// (median of 5 runs; the first run also reported alone, with a cold BPE cache).
// Default text: the Python files under /usr/lib/python3.11, up to ~8 MB.
// Default vocabulary: the gpt-2 test GGUF in tests/data/tokenizer.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "runtime/tokenizer/tokenizer.h"

namespace fs = std::filesystem;
using ghostd::runtime::Result;
using ghostd::runtime::Tokenizer;
using ghostd::runtime::VocabSpec;

namespace {

constexpr size_t kDefaultBytes = 8u << 20;
constexpr int kRuns = 5;

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string default_corpus() {
  std::vector<fs::path> files;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator("/usr/lib/python3.11", ec);
       it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) break;
    if (it->is_regular_file(ec) && it->path().extension() == ".py") files.push_back(it->path());
  }
  std::sort(files.begin(), files.end());
  std::string text;
  for (const auto& f : files) {
    if (text.size() >= kDefaultBytes) break;
    text += read_file(f);
  }
  return text;
}

// Just enough GGUF v3 to read the tokenizer keys (the real reader lives elsewhere).
class GgufVocab {
 public:
  explicit GgufVocab(std::string d) : d_(std::move(d)) {}
  bool read(VocabSpec& spec) {
    if (d_.compare(0, 4, "GGUF") != 0) return false;
    pos_ = 8;
    get<uint64_t>();
    const auto kvs = get<uint64_t>();
    for (uint64_t i = 0; i < kvs && ok_; ++i) {
      const std::string key = str();
      const auto type = get<uint32_t>();
      if (key == "tokenizer.ggml.tokens" || key == "tokenizer.ggml.merges") {
        get<uint32_t>();
        auto& out = key == "tokenizer.ggml.tokens" ? spec.tokens : spec.merges;
        for (auto n = get<uint64_t>(); n > 0 && ok_; --n) out.push_back(str());
      } else if (key == "tokenizer.ggml.token_type") {
        get<uint32_t>();
        for (auto n = get<uint64_t>(); n > 0 && ok_; --n) spec.token_types.push_back(get<int32_t>());
      } else if (key == "tokenizer.ggml.pre") {
        spec.pre = str();
      } else {
        skip(type);
      }
    }
    return ok_;
  }

 private:
  template <class T>
  T get() {
    T v{};
    if (pos_ + sizeof(T) > d_.size()) {
      ok_ = false;
      return v;
    }
    std::memcpy(&v, d_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string str() {
    const auto n = get<uint64_t>();
    if (pos_ + n > d_.size()) {
      ok_ = false;
      return {};
    }
    std::string s = d_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  void skip(uint32_t type) {
    static constexpr size_t kSizes[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    if (type == 8) {
      str();
    } else if (type == 9) {
      const auto elem = get<uint32_t>();
      for (auto n = get<uint64_t>(); n > 0 && ok_; --n) skip(elem);
    } else if (type <= 12) {
      pos_ += kSizes[type];
    } else {
      ok_ = false;
    }
  }
  std::string d_;
  size_t pos_ = 0;
  bool ok_ = true;
};

double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

Result<Tokenizer> load_gguf(const fs::path& path) {
  VocabSpec spec;
  if (!GgufVocab(read_file(path)).read(spec)) {
    return ghostd::runtime::Error{path.string() + ": not a readable GGUF file"};
  }
  return Tokenizer::from_vocab(spec);
}

}  // namespace

int main(int argc, char** argv) {
  fs::path model;
  fs::path vocab = fs::path(__FILE__).parent_path().parent_path() / "tests/data/tokenizer/ggml-vocab-gpt-2.gguf";
  fs::path input;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--model" && i + 1 < argc) {
      model = argv[++i];
    } else if (arg == "--vocab" && i + 1 < argc) {
      vocab = argv[++i];
    } else if (arg == "-h" || arg == "--help") {
      std::printf("usage: %s [FILE] [--model tokenizer.json | --vocab file.gguf]\n", argv[0]);
      return 0;
    } else {
      input = arg;
    }
  }
  auto tok = model.empty() ? load_gguf(vocab) : Tokenizer::from_hf_json(model);
  if (!tok) {
    std::fprintf(stderr, "error: %s\n", tok.error().message.c_str());
    return 1;
  }
  const std::string text = input.empty() ? default_corpus() : read_file(input);
  if (text.empty()) {
    std::fprintf(stderr, "error: no input text\n");
    return 1;
  }
  std::vector<double> seconds;
  std::vector<double> cpu_seconds;
  size_t tokens = 0;
  for (int r = 0; r < kRuns; ++r) {
    const double c0 = thread_cpu_seconds();
    const auto t0 = std::chrono::steady_clock::now();
    const auto ids = tok->encode(text, /*parse_special=*/false);
    const auto t1 = std::chrono::steady_clock::now();
    cpu_seconds.push_back(thread_cpu_seconds() - c0);
    seconds.push_back(std::chrono::duration<double>(t1 - t0).count());
    tokens = ids.size();
  }
  const double cold = seconds.front();
  std::sort(seconds.begin(), seconds.end());
  std::sort(cpu_seconds.begin(), cpu_seconds.end());
  const double median = seconds[kRuns / 2];
  const double mb = static_cast<double>(text.size()) / 1e6;
  std::printf("input: %.2f MB, %zu tokens (%.2f bytes/token), vocab %s\n", mb, tokens,
              static_cast<double>(text.size()) / static_cast<double>(tokens),
              model.empty() ? vocab.string().c_str() : model.string().c_str());
  std::printf("first run (cold cache): %.1f MB/s, %.0f tokens/s\n", mb / cold,
              static_cast<double>(tokens) / cold);
  std::printf("median of %d runs:      %.1f MB/s, %.0f tokens/s\n", kRuns, mb / median,
              static_cast<double>(tokens) / median);
  // Thread CPU time is steadier than wall time on a loaded machine.
  std::printf("median by thread CPU time: %.1f MB/s\n", mb / cpu_seconds[kRuns / 2]);
  // The regex share of the cost: the gpt-2 pre-tokenizer alone.
  if (auto pre = ghostd::runtime::PreTokenizer::from_gguf_name("gpt-2")) {
    std::vector<double> pre_seconds;
    for (int r = 0; r < kRuns; ++r) {
      size_t pieces = 0;
      const auto t0 = std::chrono::steady_clock::now();
      pre->for_each_piece(text, [&](std::string_view) { ++pieces; });
      pre_seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(pre_seconds.begin(), pre_seconds.end());
    std::printf("gpt-2 pre-tokenizer alone: %.1f MB/s\n", mb / pre_seconds[kRuns / 2]);
  }
  return 0;
}
