// Engine under concurrent editors: each simulated editor types into its own
// document (a window of a real source file) and after every keystroke submits
// a completion whose prompt is the previous prompt plus a few new tokens, then
// waits for it (closed loop). Reports per-user time per token, total tokens/s,
// time to first token and the share of prompt tokens served from the cache.
//
//   bench_engine_concurrency --model PATH [--editors 1,4,16] [--tokens 32]
//       [--source runtime/engine/scheduler.cpp] [--prompt 300] [--requests 8]
//       [--threads N] [--device cpu|cuda] [--kv-mb 256] [--no-drafts]
//       [--draft-model PATH] [--speculation lookup,suffix,model] [--check-tokens]
//
// --check-tokens: greedy exactness on this backend. Every editor of the first
// --editors run is also in the later ones (same document, same keystrokes),
// so its completions must be the same tokens alone and batched with the
// others; one more run of the first count with a fresh cache salt per
// request (no prefix reuse: every prompt prefilled from scratch) must give
// them too. A difference is printed and the exit code is 1.
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "runtime/engine/engine.h"
#include "runtime/core/log.h"
#include "runtime/model/model_loader.h"

using namespace ghostd::runtime;

namespace {

struct Args {
  std::string model;
  std::vector<int> editors = {1, 4, 16};
  int tokens = 32;
  std::string source = "runtime/engine/scheduler.cpp";
  int prompt = 300;
  int requests = 8;
  int threads = 0;
  std::string device = "cpu";
  size_t kv_mb = 256;
  bool drafts = true;
  std::string draft_model;
  bool lookup = true, suffix = true, use_model = true;
  bool check_tokens = false;
};

[[noreturn]] void usage(const char* msg) {
  std::fprintf(stderr,
               "%s\nusage: bench_engine_concurrency --model PATH [--editors 1,4,16] [--tokens 32]\n"
               "  [--source FILE] [--prompt 300] [--requests 8] [--threads N] [--device cpu|cuda] [--kv-mb 256] "
               "[--no-drafts] [--draft-model PATH] [--speculation lookup,suffix,model] [--check-tokens]\n",
               msg);
  std::exit(2);
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) usage(("missing value for " + k).c_str());
      return argv[++i];
    };
    if (k == "--model")
      a.model = val();
    else if (k == "--editors") {
      a.editors.clear();
      std::stringstream ss(val());
      for (std::string p; std::getline(ss, p, ',');) a.editors.push_back(std::stoi(p));
    } else if (k == "--tokens")
      a.tokens = std::stoi(val());
    else if (k == "--source")
      a.source = val();
    else if (k == "--prompt")
      a.prompt = std::stoi(val());
    else if (k == "--requests")
      a.requests = std::stoi(val());
    else if (k == "--threads")
      a.threads = std::stoi(val());
    else if (k == "--device")
      a.device = val();
    else if (k == "--kv-mb")
      a.kv_mb = std::stoul(val());
    else if (k == "--no-drafts")
      a.drafts = false;
    else if (k == "--draft-model")
      a.draft_model = val();
    else if (k == "--check-tokens")
      a.check_tokens = true;
    else if (k == "--speculation") {
      std::string v = ",";  // not "," + val(): GCC 12 at -O3 reports a false -Wrestrict on it
      v += val();
      v += ",";
      a.lookup = v.find(",lookup,") != std::string::npos;
      a.suffix = v.find(",suffix,") != std::string::npos;
      a.use_model = v.find(",model,") != std::string::npos;
    }
    else
      usage(("unknown flag " + k).c_str());
  }
  if (a.model.empty()) usage("--model is required");
  return a;
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i =
      std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5));
  return v[i];
}

struct Figures {
  int editors = 0;
  double tpt_p50 = 0, tpt_p99 = 0, ttft_p50 = 0, ttft_p99 = 0, tokens_per_s = 0, reuse = 0;
  double warm_reuse = 0, warm_ttft_p50 = 0, warm_ttft_p99 = 0;
  double drafts_accepted = 0;
  int max_batch = 0;
  std::vector<std::vector<std::vector<int32_t>>> outputs;  // [editor][request]: the completion's tokens
};

// One closed-loop editor: waits for each completion before the next keystroke.
struct Editor {
  std::vector<double> tpt_ms, ttft_ms;
  long generated = 0, prompt_tokens = 0, reused = 0, proposed = 0, accepted = 0;
  long warm_prompt = 0, warm_reused = 0;  // keystrokes after the first request
  int max_batch = 0;
  std::vector<std::vector<int32_t>> outputs;
};

// fresh: every request gets its own cache salt, so nothing is reused.
Figures run(const Args& a, Model& model, Model* draft, const std::vector<int32_t>& source, int editors,
            bool fresh = false) {
  EngineOptions o;
  o.kv_memory_bytes = a.kv_mb << 20;
  o.speculate = a.drafts;
  o.speculation.lookup = a.lookup;
  o.speculation.suffix = a.suffix;
  o.speculation.model = a.use_model;
  o.draft_model = a.use_model ? draft : nullptr;
  o.prefix.retained_documents = std::max(4, editors);
  auto engine = Engine::create(model, o);
  if (!engine) usage(engine.error().message.c_str());
  std::vector<Editor> eds(static_cast<size_t>(editors));
  const auto t0 = Clock::now();
  std::vector<std::thread> threads;
  for (int e = 0; e < editors; ++e) {
    threads.emplace_back([&, e] {
      Editor& ed = eds[static_cast<size_t>(e)];
      // Each editor types at its own place of the file.
      const size_t span = source.size() - static_cast<size_t>(a.prompt) - 8 * a.requests;
      const size_t start = span == 0 ? 0 : (static_cast<size_t>(e) * 997) % span;
      size_t end = start + static_cast<size_t>(a.prompt);
      for (int r = 0; r < a.requests; ++r) {
        CompletionJob job;
        job.prompt.assign(source.begin() + static_cast<long>(start),
                          source.begin() + static_cast<long>(end));
        job.document_id = "editor" + std::to_string(e);
        if (fresh) job.cache_salt = "fresh" + std::to_string(e) + "." + std::to_string(r);
        job.stop.max_new_tokens = a.tokens;
        std::mutex mu;
        std::condition_variable cv;
        bool done = false;
        JobResult result;
        JobCallbacks cb;
        cb.on_done = [&](JobResult res) {
          std::lock_guard lock(mu);
          result = std::move(res);
          done = true;
          cv.notify_one();
        };
        (*engine)->submit(std::move(job), std::move(cb));
        std::unique_lock lock(mu);
        cv.wait(lock, [&] { return done; });
        const JobMetrics& m = result.metrics;
        ed.outputs.push_back(result.status == JobStatus::kFinished ? result.tokens : std::vector<int32_t>{-1});
        ed.ttft_ms.push_back(m.ttft_ms);
        if (m.generated_tokens > 1) {
          ed.tpt_ms.push_back((m.total_ms - m.ttft_ms) / (m.generated_tokens - 1));
        }
        ed.generated += m.generated_tokens;
        ed.prompt_tokens += m.prompt_tokens;
        ed.reused += m.reused_tokens;
        if (r > 0) {
          ed.warm_prompt += m.prompt_tokens;
          ed.warm_reused += m.reused_tokens;
        }
        ed.proposed += m.draft_proposed;
        ed.accepted += m.draft_accepted;
        ed.max_batch = std::max(ed.max_batch, m.max_batch_size);
        end += 1 + static_cast<size_t>((e + r) % 4);  // a keystroke: 1-4 new tokens
      }
    });
  }
  for (auto& t : threads) t.join();
  const double wall_s = std::chrono::duration<double>(Clock::now() - t0).count();
  if (Status s = (*engine)->shutdown(); !s.ok()) usage(s.message().c_str());

  Figures f;
  f.editors = editors;
  std::vector<double> tpt, ttft, warm_ttft;
  long generated = 0, prompt = 0, reused = 0, proposed = 0, accepted = 0, warm_prompt = 0,
       warm_reused = 0;
  for (const Editor& ed : eds) {
    tpt.insert(tpt.end(), ed.tpt_ms.begin(), ed.tpt_ms.end());
    ttft.insert(ttft.end(), ed.ttft_ms.begin(), ed.ttft_ms.end());
    if (ed.ttft_ms.size() > 1)
      warm_ttft.insert(warm_ttft.end(), ed.ttft_ms.begin() + 1, ed.ttft_ms.end());
    warm_prompt += ed.warm_prompt;
    warm_reused += ed.warm_reused;
    generated += ed.generated;
    prompt += ed.prompt_tokens;
    reused += ed.reused;
    proposed += ed.proposed;
    accepted += ed.accepted;
    f.max_batch = std::max(f.max_batch, ed.max_batch);
    f.outputs.push_back(ed.outputs);
  }
  f.tpt_p50 = percentile(tpt, 0.5);
  f.tpt_p99 = percentile(tpt, 0.99);
  f.ttft_p50 = percentile(ttft, 0.5);
  f.ttft_p99 = percentile(ttft, 0.99);
  f.tokens_per_s = static_cast<double>(generated) / wall_s;
  f.warm_ttft_p50 = percentile(warm_ttft, 0.5);
  f.warm_ttft_p99 = percentile(warm_ttft, 0.99);
  f.warm_reuse =
      warm_prompt > 0 ? static_cast<double>(warm_reused) / static_cast<double>(warm_prompt) : 0;
  f.reuse = prompt > 0 ? static_cast<double>(reused) / static_cast<double>(prompt) : 0;
  f.drafts_accepted =
      proposed > 0 ? static_cast<double>(accepted) / static_cast<double>(proposed) : 0;
  return f;
}

}  // namespace

int main(int argc, char** argv) {
  setup_logging("warn");
  const Args a = parse(argc, argv);
  auto made = make_backend(a.device, a.threads);
  if (!made) usage(made.error().message.c_str());
  auto backend = std::move(*made);
  auto loaded = load_model(a.model, *backend);
  if (!loaded) usage(loaded.error().message.c_str());
  std::optional<LoadedModel> draft;
  if (!a.draft_model.empty()) {
    auto d = load_model(a.draft_model, *backend);
    if (!d) usage(d.error().message.c_str());
    draft.emplace(std::move(*d));
  }
  Model* draft_model = draft ? draft->model.get() : nullptr;
  std::ifstream in(a.source, std::ios::binary);
  if (!in) usage(("cannot read --source " + a.source).c_str());
  std::stringstream text;
  text << in.rdbuf();
  const std::vector<int32_t> source =
      loaded->tokenizer->encode(text.str(), /*parse_special=*/false);
  if (source.size() < static_cast<size_t>(a.prompt + 8 * a.requests)) {
    usage(("--source " + a.source + " has only " + std::to_string(source.size()) +
           " tokens; need --prompt + 8 * --requests")
              .c_str());
  }
  std::printf("model %s (%s, hidden %d, %d layers), backend %s, source %s (%zu tokens)\n",
              a.model.c_str(), loaded->config.architecture.c_str(), loaded->config.hidden_size,
              loaded->config.num_layers, backend->name().c_str(), a.source.c_str(), source.size());
  std::printf(
      "prompt %d tokens + 1-4 per keystroke, %d requests per editor, %d new tokens each, drafts "
      "%s%s%s%s%s\n\n",
      a.prompt, a.requests, a.tokens, a.drafts ? "on:" : "off", a.drafts && a.lookup ? " lookup" : "",
      a.drafts && a.suffix ? " suffix" : "", a.drafts && a.use_model && draft ? " model " : "",
      a.drafts && a.use_model && draft ? a.draft_model.c_str() : "");
  std::printf(
      "ttft: all requests / keystrokes after each editor's first (cold) request; reuse: share of\n"
      "prompt tokens served from the prefix cache, all / keystrokes; accept: accepted drafts\n\n");
  std::printf("%7s %9s %9s %9s %9s %9s %9s %9s %7s %7s %7s %5s\n", "editors", "tpt p50", "tpt p99",
              "ttft p50", "ttft p99", "kttft p50", "kttft p99", "tok/s", "reuse", "kreuse",
              "accept", "batch");
  {
    // Warm-up (backend threads, workspace growth, page faults); not reported.
    Args warm = a;
    warm.requests = 2;
    (void)run(warm, *loaded->model, draft_model, source, 1);
  }
  std::vector<Figures> all;
  for (int e : a.editors) {
    Figures f = run(a, *loaded->model, draft_model, source, e);
    all.push_back(f);
    std::printf("%7d %9.2f %9.2f %9.2f %9.2f %9.2f %9.2f %9.1f %6.1f%% %6.1f%% %6.1f%% %5d\n",
                f.editors, f.tpt_p50, f.tpt_p99, f.ttft_p50, f.ttft_p99, f.warm_ttft_p50,
                f.warm_ttft_p99, f.tokens_per_s, 100 * f.reuse, 100 * f.warm_reuse,
                100 * f.drafts_accepted, f.max_batch);
    std::fflush(stdout);
  }
  if (all.size() > 1) {
    std::printf("\nratios against %d editor(s) (times in ms):\n", all[0].editors);
    for (size_t i = 1; i < all.size(); ++i) {
      std::printf(
          "  %d editors: per-user time per token x%.2f, total tokens/s x%.2f, ttft p50 x%.2f\n",
          all[i].editors, all[i].tpt_p50 / all[0].tpt_p50,
          all[i].tokens_per_s / all[0].tokens_per_s, all[i].ttft_p50 / all[0].ttft_p50);
    }
  }
  if (!a.check_tokens) return 0;
  // The first run's editors against their runs beside others, and against a
  // run of the first count without prefix reuse.
  Figures fresh = run(a, *loaded->model, draft_model, source, all[0].editors, /*fresh=*/true);
  std::printf("\ngreedy tokens of the %d editor(s) of the first run (%d completions each):\n", all[0].editors,
              a.requests);
  int failures = 0;
  auto compare = [&](const Figures& other, const std::string& what) {
    int same = 0, total = 0;
    for (size_t e = 0; e < all[0].outputs.size(); ++e) {
      for (size_t r = 0; r < all[0].outputs[e].size(); ++r) {
        ++total;
        const auto& ref = all[0].outputs[e][r];
        if (ref != std::vector<int32_t>{-1} && e < other.outputs.size() && r < other.outputs[e].size() &&
            other.outputs[e][r] == ref)
          ++same;
      }
    }
    std::printf("  %s: %d of %d identical%s\n", what.c_str(), same, total, same == total ? "" : "  DIFFER");
    if (same != total) ++failures;
  };
  for (size_t i = 1; i < all.size(); ++i)
    compare(all[i], "batched with " + std::to_string(all[i].editors - 1) + " other editor(s)");
  compare(fresh, "every prompt prefilled fresh (no prefix reuse)");
  return failures == 0 ? 0 : 1;
}
