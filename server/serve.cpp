#include "server/serve.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

#include "runtime/model/model_loader.h"
#include "runtime/parallel/device_group.h"
#include "server/lsp_server.h"
#include "runtime/engine/engine.h"
#include "runtime/engine/replica_set.h"

namespace ghostd::server {

namespace rt = ghostd::runtime;
namespace fs = std::filesystem;

namespace {

constexpr const char* kBundledModel = "qwen2-code-small";
constexpr const char* kBundledDraft = "qwen2-code-draft";

// Forwards to the engine once the model is loaded; jobs before that fail.
// Thread-safety: thread-safe.
class EngineSlot : public rt::EngineInterface {
 public:
  void set(rt::EngineInterface* engine) {
    std::lock_guard lock(mu_);
    engine_ = engine;
  }
  rt::JobId submit(rt::CompletionJob job, rt::JobCallbacks callbacks) override {
    rt::EngineInterface* e = get();
    if (!e) {
      rt::JobResult r;
      r.status = rt::JobStatus::kFailed;
      r.error = "the model is not loaded";
      if (callbacks.on_done) callbacks.on_done(std::move(r));
      return 0;
    }
    return e->submit(std::move(job), std::move(callbacks));
  }
  void cancel(rt::JobId id) override {
    if (rt::EngineInterface* e = get()) e->cancel(id);
  }
  std::string fatal_error() const override {
    std::lock_guard lock(mu_);
    return engine_ ? engine_->fatal_error() : std::string();
  }

 private:
  rt::EngineInterface* get() {
    std::lock_guard lock(mu_);
    return engine_;
  }
  mutable std::mutex mu_;
  rt::EngineInterface* engine_ = nullptr;
};

// One engine's model, draft and backend. A Model is driven by one engine at
// a time, so each replica loads its own from the same files (on the CPU the
// weights stay in the memory-mapped files: the replicas share those pages).
struct Replica {
  rt::DeviceGroup devices;  // the model's ranks (one without tensor parallelism)
  std::optional<rt::LoadedModel> model;
  std::optional<rt::LoadedModel> draft;
};

// What the loader thread builds; destroyed after the sessions are gone.
// Thread-safety: written by the loader thread, read after join().
struct Runtime {
  std::vector<Replica> replicas;
  std::unique_ptr<rt::EngineInterface> engine;  // a ReplicaSet over them; declared last: goes first
};

rt::Result<std::unique_ptr<rt::Engine>> make_engine(rt::Model& model, rt::Model* draft, const rt::Tokenizer* tokenizer,
                                                    const ServerOptions& o, size_t kv_bytes) {
  rt::EngineOptions eo;
  eo.kv_memory_bytes = kv_bytes;
  eo.scheduler.share_window_ms = o.share_window_ms;
  eo.speculate = o.use_draft && o.max_draft > 0;
  eo.speculation.lookup = o.spec_lookup;
  eo.speculation.suffix = o.spec_suffix;
  eo.speculation.model = o.spec_model;
  eo.speculation.typed = o.spec_typed;
  eo.speculation.max_draft = o.max_draft;
  eo.speculation.trees = o.draft_trees;
  eo.draft_model = draft;
  if (tokenizer) {
    // Token healing needs every token's bytes; special tokens never heal.
    eo.token_bytes.resize(static_cast<size_t>(model.config().vocab_size));
    for (size_t id = 0; id < tokenizer->vocab_size() && id < eo.token_bytes.size(); ++id)
      if (!tokenizer->is_special(static_cast<int32_t>(id)))
        eo.token_bytes[id] = tokenizer->token_bytes(static_cast<int32_t>(id));
  }
  return rt::Engine::create(model, std::move(eo));
}

// The KV budget of replica `index` of `count`: --kv-memory-mb each; by
// default the engine's own rule, except that replicas sharing a GPU split
// what it has free instead of the first taking it all.
size_t kv_budget(const ServerOptions& o, const rt::Model& model, int index, int count) {
  if (o.kv_memory_mb > 0 || count == 1) return static_cast<size_t>(o.kv_memory_mb) << 20;
  const size_t free = model.free_memory();
  if (free == 0) return 0;  // the CPU: the engine's default per replica
  const size_t margin = std::max(rt::Engine::kGpuMemoryMargin, free / 10);
  if (free <= margin) return 0;  // the engine reports the shortage
  return (free - margin) / static_cast<size_t>(count - index);
}

// The draft to load for `target`: the one asked for ("none": no draft), else
// the bundled draft beside the bundled target; empty path: none.
fs::path draft_path_for(const fs::path& target, const std::string& asked, const ServerOptions& o) {
  if (!o.use_draft || !o.spec_model || o.max_draft <= 0 || asked == "none") return {};
  if (!asked.empty()) return asked;
  std::error_code ec;
  const fs::path t = fs::weakly_canonical(target, ec);
  if (ec || t.filename() != kBundledModel) return {};
  const fs::path d = t.parent_path() / kBundledDraft;
  return fs::exists(d / "config.json", ec) ? d : fs::path();
}

// A draft must map token ids to the same text as the target.
rt::Status check_same_vocabulary(const rt::LoadedModel& target, const rt::LoadedModel& draft) {
  const std::string names = "draft model " + draft.path.string() + " and model " + target.path.string();
  if (draft.config.vocab_size != target.config.vocab_size) {
    return rt::Error{names + " have different vocabularies (" + std::to_string(draft.config.vocab_size) + " and " +
                     std::to_string(target.config.vocab_size) + " tokens); a draft must share the model's tokenizer"};
  }
  if (draft.tokenizer && target.tokenizer) {
    const rt::Tokenizer& a = *draft.tokenizer;
    const rt::Tokenizer& b = *target.tokenizer;
    if (a.vocab_size() != b.vocab_size()) {
      return rt::Error{names + " have tokenizers of " + std::to_string(a.vocab_size()) + " and " +
                       std::to_string(b.vocab_size()) + " tokens; a draft must share the model's tokenizer"};
    }
    for (size_t id = 0; id < a.vocab_size(); ++id) {
      const auto t = static_cast<int32_t>(id);
      if (a.token_bytes(t) != b.token_bytes(t) || a.is_special(t) != b.is_special(t)) {
        return rt::Error{names + " differ at token " + std::to_string(id) +
                         "; a draft must share the model's tokenizer"};
      }
    }
  }
  return {};
}

// Loads replica `index` of `count` (its backend, model and draft).
rt::Status load_replica(const fs::path& path, const fs::path& draft_path, const ServerOptions& o, int index, int count,
                        Replica& out, ModelState& state) {
  const std::string who = count > 1 ? "replica " + std::to_string(index + 1) + "/" + std::to_string(count) + ": " : "";
  const int base = 90 * index / count;
  const int span = 90 / count;
  // Replicas on the CPU share its cores unless --threads says otherwise
  // (a replica's CPU ranks split its share again).
  const int threads = o.threads == 0 && count > 1
                          ? std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / count)
                          : o.threads;
  auto devices = replica_devices(o, index, count);
  if (!devices.ok()) return devices.error();
  auto group = rt::make_device_group(*devices, {.cpu_threads = threads});
  if (!group.ok()) return group.error();
  out.devices = std::move(*group);
  // The tokenizer is read once, with the first replica.
  auto loaded = rt::load_model(path, out.devices.backend_list(), out.devices.comm_list(), index == 0,
                               [&](double frac, std::string_view what) {
                                 state.report_progress(base + static_cast<int>(frac * span), who + std::string(what));
                               });
  if (!loaded.ok()) return loaded.error();
  out.model.emplace(std::move(*loaded));
  if (draft_path.empty()) return {};
  state.report_progress(base + span, who + "loading the draft model " + draft_path.string());
  // The draft runs whole on rank 0's device.
  auto draft = rt::load_model(draft_path, *out.devices.backends[0], index == 0);
  if (!draft.ok()) return rt::Error{"draft model: " + draft.error().message};
  if (index == 0) {
    if (rt::Status st = check_same_vocabulary(*out.model, *draft); !st.ok()) return st;
  }
  out.draft.emplace(std::move(*draft));
  return {};
}

// "cpu-avx2", or "2 x cpu-avx2 tensor-parallel".
std::string backend_description(const rt::DeviceGroup& g) {
  const std::string name = g.backends.front()->name();
  return g.size() == 1 ? name : std::to_string(g.size()) + " x " + name + " tensor-parallel";
}

void load(const fs::path& path, const fs::path& draft_path, const ServerOptions& o, Runtime& rt_out,
          EngineSlot& slot, ModelState& state) {
  const int count = std::max(1, o.replicas);
  auto fail = [&state](const std::string& message) {
    spdlog::error("{}", message);
    state.set_failed(message);
  };
  state.report_progress(0, "loading " + path.string());
  const auto t0 = std::chrono::steady_clock::now();
  rt_out.replicas.resize(static_cast<size_t>(count));
  for (int i = 0; i < count; ++i) {
    if (rt::Status st = load_replica(path, draft_path, o, i, count, rt_out.replicas[static_cast<size_t>(i)], state);
        !st.ok()) {
      return fail(count > 1 ? "replica " + std::to_string(i) + ": " + st.message() : st.message());
    }
  }
  state.report_progress(95, count > 1 ? "starting " + std::to_string(count) + " engines" : "starting the engine");
  const rt::LoadedModel& first = *rt_out.replicas.front().model;
  std::vector<std::unique_ptr<rt::EngineInterface>> engines;
  for (int i = 0; i < count; ++i) {
    Replica& r = rt_out.replicas[static_cast<size_t>(i)];
    auto engine = make_engine(*r.model->model, r.draft ? r.draft->model.get() : nullptr, first.tokenizer.get(), o,
                              kv_budget(o, *r.model->model, i, count));
    if (!engine.ok()) {
      return fail(count > 1 ? "replica " + std::to_string(i) + ": " + engine.error().message : engine.error().message);
    }
    engines.push_back(std::move(*engine));
  }
  rt_out.engine = std::make_unique<rt::ReplicaSet>(std::move(engines));
  slot.set(rt_out.engine.get());
  auto s = state.set_ready(path.filename().string(), make_tokenizer_view(*first.tokenizer),
                           first.config.max_position_embeddings);
  if (!s.ok()) {
    spdlog::error("{}", s.message());
    return;
  }
  // Logged once requests are served: clients and tests take this line as the ready signal.
  spdlog::info("model {} ready in {:.2f} s ({} layers, hidden {}, {} backend{}{})", path.string(),
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), first.config.num_layers,
               first.config.hidden_size, backend_description(rt_out.replicas.front().devices),
               rt_out.replicas.front().draft ? ", draft " + draft_path.string() : std::string(),
               count > 1 ? ", " + std::to_string(count) + " replicas" : std::string());
  if (auto snap = state.snapshot(); snap.info && !snap.info->warning.empty()) spdlog::warn("{}", snap.info->warning);
}

}  // namespace

rt::Result<std::vector<std::string>> replica_devices(const ServerOptions& o, int index, int count) {
  const int tp = o.tensor_parallel;
  auto all = rt::resolve_devices(o.devices, o.devices.empty() ? tp : 0, o.device);
  if (!all.ok()) return all.error();
  const int listed = static_cast<int>(all->size());
  if (!o.devices.empty() && tp > 0 && listed != tp && listed != tp * count)
    return rt::Error{"--tensor-parallel " + std::to_string(tp) + " with " + std::to_string(listed) +
                     " --devices: give one device per rank (" + std::to_string(tp) + ") or per rank of every replica (" +
                     std::to_string(tp * count) + ")"};
  const int ranks = tp > 0 ? tp : (count > 1 && listed % count == 0 ? listed / count : listed);
  if (count > 1 && listed == ranks * count)
    return std::vector<std::string>(all->begin() + index * ranks, all->begin() + (index + 1) * ranks);
  return all;
}

std::optional<fs::path> find_bundled_model(const fs::path& executable) {
  std::error_code ec;
  fs::path dir = fs::weakly_canonical(executable, ec).parent_path();
  for (int up = 0; up < 5 && !dir.empty(); ++up) {
    for (const fs::path& candidate : {dir / "share" / "ghostd" / "models" / kBundledModel, dir / "models" / kBundledModel}) {
      if (fs::exists(candidate / "config.json", ec)) return candidate;
    }
    if (dir == dir.parent_path()) break;
    dir = dir.parent_path();
  }
  return std::nullopt;
}

int run_serve(std::span<char*> args, const char* argv0) {
  std::vector<const char*> argv = {argv0};
  for (char* a : args) {
    std::string_view s = a;
    if (s == "--help" || s == "-h") {
      std::fputs(server_options_help(), stdout);
      return 0;
    }
    argv.push_back(a);
  }
  auto options = parse_server_options(static_cast<int>(argv.size()), argv.data());
  if (!options.ok()) {
    std::fprintf(stderr, "ghostd: %s\n", options.error().message.c_str());
    return 2;
  }
  // main() installed the logger from GHOSTD_LOG; an explicit --log-level wins.
  if (options->log_level != "info" || !std::getenv("GHOSTD_LOG")) {
    spdlog::set_level(spdlog::level::from_str(options->log_level));
  }

  EngineSlot slot;
  ModelState state;
  Runtime runtime;
  std::thread loader;
  const ServerOptions& o = *options;
  // The handler and the loader thread use locals of this frame: the loader
  // is joined below before any of them goes, and `state` (which holds the
  // handler) goes with them.
  state.set_load_request_handler([&o, &state, &loader, &runtime, &slot, argv0](const std::string& requested) {
    // The default: --model PATH, else the first --model NAME=PATH.
    const std::string& fallback = o.model.empty() && !o.named_models.empty() ? o.named_models.front().second : o.model;
    fs::path path = requested.empty() ? fs::path(fallback) : fs::path(requested);
    if (path.empty()) {
      std::error_code ec;
      fs::path exe = fs::read_symlink("/proc/self/exe", ec);
      if (auto bundled = find_bundled_model(ec ? fs::path(argv0) : exe)) path = *bundled;
    }
    if (path.empty()) {
      state.set_failed(std::string("no model: pass --model PATH or initializationOptions.model (no bundled models/") +
                       kBundledModel + " found near " + argv0 + ")");
      return;
    }
    // Called once, from the first session's initialize (or below): load off the event loop.
    const fs::path draft = draft_path_for(path, state.requested_draft().empty() ? o.draft_model : state.requested_draft(), o);
    loader = std::thread([&o, &runtime, &slot, &state, path, draft] { load(path, draft, o, runtime, slot, state); });
  });

  int code = 0;
  if (o.listen.empty()) {
    // The client's initializationOptions may name the model: load on initialize.
    code = run_lsp_stdio(o, slot, state);
  } else {
    // Socket sessions select models by name only; the daemon loads its
    // default now (so a session naming it by name gets no warning).
    (void)state.request_model(o.model.empty() && !o.named_models.empty() ? o.named_models.front().second : o.model);
    code = run_lsp_socket(o, slot, state);
  }
  if (loader.joinable()) loader.join();
  slot.set(nullptr);
  runtime.engine.reset();  // ends what is left of its jobs before the model goes
  return code;
}

}  // namespace ghostd::server
