// ghostd_logits: prefill + greedy decode on a model, writing every logits row
// for comparison with the PyTorch reference (tests/reference). With --batch B
// it also decodes B-1 other sequences in the same steps and checks that
// sequence 0's logits are bit-identical to a run alone. With
// --tensor-parallel N the model runs sharded over N CPU ranks.
//
// Output (--out): "GLOG", int32 n_fed, int32 vocab, int32 tokens[n_fed],
// float32 logits[n_fed][vocab]; row i = logits after tokens[0..i].
#include <spdlog/spdlog.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "runtime/core/log.h"
#include "runtime/model/model_loader.h"
#include "runtime/engine/sampling.h"
#include "runtime/parallel/device_group.h"

using namespace ghostd::runtime;

namespace {

struct Args {
  std::string model, out, tokens;
  int steps = 8, batch = 1, threads = 0, tensor_parallel = 1;
};

int usage() {
  std::fprintf(stderr,
               "usage: ghostd_logits --model PATH --tokens \"1 2 3\" [--steps K] [--batch B] "
               "[--threads N] [--tensor-parallel N] --out FILE\n");
  return 2;
}

// Runs `prompts` together: one prefill step, then `steps` greedy decode steps.
// Returns per sequence the fed tokens and logits rows.
Status run(Model& model, const std::vector<std::vector<int32_t>>& prompts, int steps,
           std::vector<std::vector<int32_t>>& fed, std::vector<std::vector<float>>& rows) {
  const ModelConfig& c = model.config();
  const int bs = 16;
  size_t longest = 0;
  for (auto& p : prompts) longest = std::max(longest, p.size());
  const int blocks_per_seq = static_cast<int>((longest + steps + bs - 1) / bs);
  auto kv = KvStorage::create(model, blocks_per_seq * static_cast<int>(prompts.size()), bs);
  if (!kv) return kv.error();
  const size_t n = prompts.size();
  std::vector<std::vector<int32_t>> tables(n);
  for (size_t s = 0; s < n; ++s)
    for (int b = 0; b < blocks_per_seq; ++b)  // interleaved, so tables are not contiguous
      tables[s].push_back(static_cast<int32_t>(b * n + s));
  fed = prompts;
  rows.assign(n, {});
  std::vector<float> logits;
  std::vector<int32_t> next(n);
  for (int step = 0; step <= steps; ++step) {
    std::vector<SequenceInput> batch(n);
    for (size_t s = 0; s < n; ++s) {
      batch[s].block_table = tables[s];
      if (step == 0) {
        batch[s].tokens = prompts[s];
        batch[s].start_pos = 0;
        batch[s].all_logits = true;
      } else {
        batch[s].tokens = std::span<const int32_t>(&fed[s].back(), 1);
        batch[s].start_pos = static_cast<int32_t>(fed[s].size() - 1);
      }
    }
    GHOSTD_TRY_STATUS(model.reserve(Model::capacity_for(batch)));  // no-op once the prefill reserved
    GHOSTD_TRY_STATUS(model.forward(batch, *kv, logits));
    size_t row = 0;
    for (size_t s = 0; s < n; ++s) {
      size_t nrows = batch[s].all_logits ? batch[s].tokens.size() : 1;
      const float* base = logits.data() + row * c.vocab_size;
      rows[s].insert(rows[s].end(), base, base + nrows * c.vocab_size);
      next[s] = argmax(std::span<const float>(base + (nrows - 1) * c.vocab_size, c.vocab_size));
      row += nrows;
    }
    if (step < steps)
      for (size_t s = 0; s < n; ++s) fed[s].push_back(next[s]);
  }
  return {};
}

}  // namespace

int main(int argc, char** argv) {
  setup_logging("warn");
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    auto val = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (k == "--model") a.model = val();
    else if (k == "--out") a.out = val();
    else if (k == "--tokens") a.tokens = val();
    else if (k == "--steps") a.steps = std::atoi(val().c_str());
    else if (k == "--batch") a.batch = std::atoi(val().c_str());
    else if (k == "--threads") a.threads = std::atoi(val().c_str());
    else if (k == "--tensor-parallel") a.tensor_parallel = std::atoi(val().c_str());
    else return usage();
  }
  if (a.model.empty() || a.out.empty() || a.tokens.empty() || a.steps < 0 || a.batch < 1 || a.tensor_parallel < 1)
    return usage();
  std::vector<int32_t> prompt;
  std::istringstream ts(a.tokens);
  for (int32_t t; ts >> t;) prompt.push_back(t);
  if (prompt.empty()) return usage();

  auto group = make_device_group(std::vector<std::string>(static_cast<size_t>(a.tensor_parallel), "cpu"),
                                 {.cpu_threads = a.threads});
  if (!group) {
    std::fprintf(stderr, "ghostd_logits: %s\n", group.error().message.c_str());
    return 1;
  }
  const auto backends = group->backend_list();
  const auto comms = group->comm_list();
  auto loaded = load_model(a.model, backends, comms, /*need_tokenizer=*/false);
  if (!loaded) {
    std::fprintf(stderr, "ghostd_logits: %s\n", loaded.error().message.c_str());
    return 1;
  }
  Model& model = *loaded->model;
  const int vocab = model.config().vocab_size;

  std::vector<std::vector<int32_t>> fed;
  std::vector<std::vector<float>> rows;
  if (auto st = run(model, {prompt}, a.steps, fed, rows); !st) {
    std::fprintf(stderr, "ghostd_logits: %s\n", st.message().c_str());
    return 1;
  }
  if (a.batch > 1) {
    // Other sequences: rotations of the prompt with different lengths.
    std::vector<std::vector<int32_t>> prompts{prompt};
    for (int b = 1; b < a.batch; ++b) {
      std::vector<int32_t> p(prompt.begin() + b % prompt.size(), prompt.end());
      p.insert(p.end(), prompt.begin(), prompt.begin() + b % prompt.size());
      p.resize(std::max<size_t>(1, p.size() - b % 5));
      prompts.push_back(p);
    }
    std::vector<std::vector<int32_t>> bfed;
    std::vector<std::vector<float>> brows;
    if (auto st = run(model, prompts, a.steps, bfed, brows); !st) {
      std::fprintf(stderr, "ghostd_logits: %s\n", st.message().c_str());
      return 1;
    }
    if (bfed[0] != fed[0] || std::memcmp(brows[0].data(), rows[0].data(), rows[0].size() * 4) != 0) {
      std::fprintf(stderr, "ghostd_logits: batched logits differ from the single-sequence run\n");
      return 1;
    }
    std::fprintf(stderr, "ghostd_logits: batch of %d bit-identical to the run alone\n", a.batch);
  }
  std::ofstream f(a.out, std::ios::binary);
  const int32_t n_fed = static_cast<int32_t>(fed[0].size());
  f.write("GLOG", 4);
  f.write(reinterpret_cast<const char*>(&n_fed), 4);
  f.write(reinterpret_cast<const char*>(&vocab), 4);
  f.write(reinterpret_cast<const char*>(fed[0].data()), n_fed * 4);
  f.write(reinterpret_cast<const char*>(rows[0].data()), rows[0].size() * 4);
  if (!f) {
    std::fprintf(stderr, "ghostd_logits: cannot write %s\n", a.out.c_str());
    return 1;
  }
  return 0;
}
