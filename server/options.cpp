#include "server/options.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <iterator>
#include <string_view>

namespace ghostd::server {

using ghostd::runtime::Error;
using ghostd::runtime::Result;
using ghostd::runtime::Status;

namespace {

Result<long long> parse_int(std::string_view flag, std::string_view v, long long lo, long long hi) {
  long long out = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  if (ec != std::errc() || p != v.data() + v.size() || out < lo || out > hi) {
    return Error{std::string(flag) + ": expected an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) +
                 "], got '" + std::string(v) + "'"};
  }
  return out;
}

}  // namespace

const char* server_options_help() {
  return "ghostd [options]\n"
         "  --model PATH             model directory or .gguf file\n"
         "  --draft-model PATH       draft model for speculative decoding (same vocabulary as the\n"
         "                           model; default: the bundled draft with the bundled model; none)\n"
         "  --speculation LIST       proposers: lookup,suffix,model,typed (all)\n"
         "  --max-draft N            draft tokens per completion and step, at most (8)\n"
         "  --no-draft               disable speculative decoding\n"
         "  --draft-trees on|off     suffix index and prompt lookup may offer token trees (on)\n"
         "  --max-tokens N           new tokens per completion (64)\n"
         "  --context-budget N       prompt tokens in all (2048)\n"
         "  --suffix-tokens N        suffix window in tokens (128)\n"
         "  --context-tokens N       tokens from other open files (512)\n"
         "  --deadline-ms N          a completion returns what it has after N ms (1500)\n"
         "  --max-lines N            lines per completion (16)\n"
         "  --metrics-log PATH       append one JSON line per completion\n"
         "  --metrics-summary-s N    seconds between summary lines (10)\n"
         "  --listen ADDR            127.0.0.1:PORT or unix:/path instead of stdio\n"
         "  --max-message-bytes N    largest accepted LSP message (67108864)\n"
         "  --log-level LEVEL        trace|debug|info|warn|error|off (info)\n"
         "  --threads N              CPU backend threads (0 = all cores)\n"
         "  --device DEV             cpu, cuda, cuda:N or auto (cpu)\n"
         "  --tensor-parallel N      shard the model over N ranks (1; CPU ranks share --threads)\n"
         "  --devices LIST           one device per rank: cuda:0,cuda:1 or cpu,cpu\n"
         "  --kv-memory-mb N         KV cache budget in MiB (0 = the engine's default)\n"
         "  --replicas M             engines behind this server, 1..64 (1); a document's requests\n"
         "                           stay on one replica (its KV), each replica has its own KV budget\n"
         "  --model NAME=PATH        a model clients may select by name (repeatable; with --listen\n"
         "                           clients can select nothing else)\n"
         "remote editors (with --listen; docs/deployment.md):\n"
         "  --tls-cert PEM           TLS certificate chain for the TCP listener (TLS 1.2+)\n"
         "  --tls-key PEM            its private key\n"
         "  --token-file PATH        lines 'TENANT TOKEN'; sessions send initializationOptions.token\n"
         "  --insecure               allow a non-loopback address without TLS and tokens\n"
         "  --handshake-timeout-ms N TLS handshake, then the first message, within N ms (10000)\n"
         "  --idle-timeout-s N       close a session that sends nothing for N s (0 = never)\n"
         "  --max-open-documents N   open documents per session (1000)\n"
         "  --max-document-bytes N   bytes of all open documents of a session (268435456)\n"
         "  --max-requests-in-flight N  unanswered completion requests per session (64)\n"
         "  --max-requests-per-second N completion requests per session per second, bursts of N (0 = no limit)\n"
         "  --share-window-ms N      a session with work in the last N ms still counts when a backlogged\n"
         "                           session's share of a step is set (1000; 0 = only sessions with work)\n"
         "  --prompt-threads N       threads that tokenize prompts, for all sessions, round-robin between them\n"
         "                           (1; 0 = on the event loop)\n";
}

namespace {
// "lookup,model" -> the flags; an unknown name is an error naming the known ones.
Status parse_speculation(std::string_view list, ServerOptions& o) {
  o.spec_lookup = o.spec_suffix = o.spec_model = o.spec_typed = false;
  while (!list.empty()) {
    const size_t comma = list.find(',');
    const std::string_view name = list.substr(0, comma);
    if (name == "lookup") o.spec_lookup = true;
    else if (name == "suffix") o.spec_suffix = true;
    else if (name == "model") o.spec_model = true;
    else if (name == "typed") o.spec_typed = true;
    else return Error{"--speculation: unknown proposer '" + std::string(name) + "' (lookup, suffix, model, typed)"};
    list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
  }
  return {};
}
}  // namespace

// More engines than this on one server is a typo, not a deployment.
constexpr int kMaxReplicas = 64;

Result<ServerOptions> parse_server_options(int argc, const char* const* argv) {
  ServerOptions o;
  for (int i = 1; i < argc; ++i) {
    std::string_view flag = argv[i];
    std::string_view value;
    static constexpr std::string_view kValueFlags[] = {
        "--model",          "--draft-model",       "--max-tokens", "--context-budget",
        "--suffix-tokens",  "--context-tokens",    "--deadline-ms", "--max-lines",
        "--metrics-log",    "--metrics-summary-s", "--listen",      "--max-message-bytes",
        "--log-level",      "--threads",           "--kv-memory-mb", "--device",
        "--tls-cert",       "--tls-key",           "--token-file",  "--handshake-timeout-ms",
        "--idle-timeout-s", "--max-open-documents", "--max-document-bytes", "--max-requests-in-flight",
        "--max-requests-per-second", "--speculation",    "--max-draft",         "--tensor-parallel", "--devices",
        "--replicas",       "--draft-trees",       "--prompt-threads", "--share-window-ms"};
    std::string_view name = flag.substr(0, flag.find('='));
    if (name == "--insecure") {
      if (flag != name) return Error{"--insecure takes no value"};
      o.insecure = true;
      continue;
    }
    if (name != "--no-draft" &&
        std::find(std::begin(kValueFlags), std::end(kValueFlags), name) == std::end(kValueFlags)) {
      return Error{"unknown flag " + std::string(name) + " (see --help)"};
    }
    if (size_t eq = flag.find('='); flag.starts_with("--") && eq != std::string_view::npos) {
      value = flag.substr(eq + 1);
      flag = flag.substr(0, eq);
    } else if (flag != "--no-draft") {
      if (i + 1 >= argc) return Error{std::string(flag) + ": missing value"};
      value = argv[++i];
    }
    auto int_flag = [&](int& field, long long lo, long long hi) -> Status {
      auto v = parse_int(flag, value, lo, hi);
      if (!v.ok()) return v.error();
      field = static_cast<int>(*v);
      return {};
    };
    Status s;
    if (flag == "--model") {
      // NAME=PATH when what comes before '=' is a plain name (paths have a '/' or a dot-free tail).
      size_t eq = value.find('=');
      std::string_view n = value.substr(0, eq == std::string_view::npos ? 0 : eq);
      if (!n.empty() && std::all_of(n.begin(), n.end(), [](char c) {
            return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
          })) {
        if (value.size() == eq + 1) return Error{"--model " + std::string(value) + ": missing the path after '='"};
        if (find_named_model(o, n)) return Error{"--model: the name '" + std::string(n) + "' is given twice"};
        o.named_models.emplace_back(std::string(n), std::string(value.substr(eq + 1)));
      } else {
        if (!o.model.empty()) return Error{"--model: only one unnamed model (name the others: --model NAME=PATH)"};
        o.model = value;
      }
    } else if (flag == "--draft-model") {
      if (value.empty()) return Error{"--draft-model: expected a path or none"};
      o.draft_model = value;
    } else if (flag == "--speculation") {
      s = parse_speculation(value, o);
    } else if (flag == "--max-draft") {
      s = int_flag(o.max_draft, 0, 32);
    } else if (flag == "--no-draft") {
      o.use_draft = false;
    } else if (flag == "--draft-trees") {
      if (value != "on" && value != "off")
        return Error{"--draft-trees: expected on or off, got '" + std::string(value) + "'"};
      o.draft_trees = value == "on";
    } else if (flag == "--max-tokens") {
      s = int_flag(o.max_tokens, 1, 4096);
    } else if (flag == "--context-budget") {
      s = int_flag(o.context_budget, 16, 1 << 20);
    } else if (flag == "--suffix-tokens") {
      s = int_flag(o.suffix_tokens, 0, 1 << 20);
    } else if (flag == "--context-tokens") {
      s = int_flag(o.context_tokens, 0, 1 << 20);
    } else if (flag == "--deadline-ms") {
      s = int_flag(o.deadline_ms, 1, 600000);
    } else if (flag == "--max-lines") {
      s = int_flag(o.max_lines, 1, 10000);
    } else if (flag == "--metrics-log") {
      o.metrics_log = value;
    } else if (flag == "--metrics-summary-s") {
      s = int_flag(o.metrics_summary_s, 1, 86400);
    } else if (flag == "--listen") {
      o.listen = value;
    } else if (flag == "--max-message-bytes") {
      auto v = parse_int(flag, value, 1024, 1ll << 32);
      if (!v.ok()) return v.error();
      o.max_message_bytes = static_cast<size_t>(*v);
    } else if (flag == "--threads") {
      s = int_flag(o.threads, 0, 1024);
    } else if (flag == "--device") {
      o.device = value;
    } else if (flag == "--tensor-parallel") {
      s = int_flag(o.tensor_parallel, 1, 64);
    } else if (flag == "--devices") {
      o.devices = value;
    } else if (flag == "--kv-memory-mb") {
      s = int_flag(o.kv_memory_mb, 0, 1 << 20);
    } else if (flag == "--replicas") {
      s = int_flag(o.replicas, 1, kMaxReplicas);
    } else if (flag == "--log-level") {
      o.log_level = value;
    } else if (flag == "--tls-cert") {
      o.tls_cert = value;
    } else if (flag == "--tls-key") {
      o.tls_key = value;
    } else if (flag == "--token-file") {
      o.token_file = value;
    } else if (flag == "--handshake-timeout-ms") {
      s = int_flag(o.handshake_timeout_ms, 10, 600000);
    } else if (flag == "--idle-timeout-s") {
      s = int_flag(o.idle_timeout_s, 0, 7 * 86400);
    } else if (flag == "--max-open-documents") {
      s = int_flag(o.max_documents, 1, 1 << 20);
    } else if (flag == "--max-document-bytes") {
      auto v = parse_int(flag, value, 1024, 1ll << 40);
      if (!v.ok()) return v.error();
      o.max_document_bytes = static_cast<size_t>(*v);
    } else if (flag == "--max-requests-in-flight") {
      s = int_flag(o.max_requests_in_flight, 1, 1 << 20);
    } else if (flag == "--max-requests-per-second") {
      s = int_flag(o.max_requests_per_second, 0, 1 << 20);
    } else if (flag == "--prompt-threads") {
      s = int_flag(o.prompt_threads, 0, 64);
    } else if (flag == "--share-window-ms") {
      s = int_flag(o.share_window_ms, 0, 3600000);
    } else {
      return Error{"unknown flag " + std::string(flag) + " (see --help)"};
    }
    if (!s.ok()) return s.error();
  }
  // Flags that would otherwise be silently ignored.
  if (o.tls_cert.empty() != o.tls_key.empty()) return Error{"--tls-cert and --tls-key go together"};
  const bool remote_flags = o.tls() || !o.token_file.empty() || o.insecure || o.idle_timeout_s > 0;
  if (remote_flags && o.listen.empty()) {
    return Error{"--tls-cert, --tls-key, --token-file, --insecure and --idle-timeout-s need --listen "
                 "(a stdio session is the editor's own process)"};
  }
  if (o.tls() && o.listen.starts_with("unix:")) {
    return Error{"--tls-cert: TLS is for TCP listeners; a Unix socket is guarded by its file permissions"};
  }
  return o;
}

const std::string* find_named_model(const ServerOptions& options, std::string_view name) {
  for (const auto& [n, path] : options.named_models) {
    if (n == name) return &path;
  }
  return nullptr;
}

Status apply_initialization_options(ServerOptions& options, const nlohmann::json& j) {
  if (j.is_null()) return {};
  if (!j.is_object()) return Error{"initializationOptions: expected an object"};
  ServerOptions o = options;
  struct IntKey {
    const char* key;
    int* field;
    int lo, hi;
  };
  const IntKey ints[] = {
      {"maxTokens", &o.max_tokens, 1, 4096},          {"contextBudget", &o.context_budget, 16, 1 << 20},
      {"suffixTokens", &o.suffix_tokens, 0, 1 << 20}, {"contextTokens", &o.context_tokens, 0, 1 << 20},
      {"deadlineMs", &o.deadline_ms, 1, 600000},       {"maxLines", &o.max_lines, 1, 10000},
  };
  for (const auto& k : ints) {
    auto it = j.find(k.key);
    if (it == j.end() || it->is_null()) continue;
    if (!it->is_number_integer() || it->get<long long>() < k.lo || it->get<long long>() > k.hi) {
      return Error{"initializationOptions." + std::string(k.key) + ": expected an integer in [" +
                   std::to_string(k.lo) + ", " + std::to_string(k.hi) + "]"};
    }
    *k.field = it->get<int>();
  }
  const std::pair<const char*, std::string*> strings[] = {
      {"model", &o.model}, {"metricsLog", &o.metrics_log}};
  for (const auto& [key, field] : strings) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) continue;
    if (!it->is_string()) return Error{"initializationOptions." + std::string(key) + ": expected a string"};
    *field = it->get<std::string>();
  }
  if (auto it = j.find("draftModel"); it != j.end() && !it->is_null()) {
    if (!it->is_string()) return Error{"initializationOptions.draftModel: expected a string (a path, or none)"};
    o.draft_model = it->get<std::string>();
  }
  if (auto it = j.find("useDraft"); it != j.end() && !it->is_null()) {
    if (!it->is_boolean()) return Error{"initializationOptions.useDraft: expected a boolean"};
    o.use_draft = it->get<bool>();
  }
  options = o;
  return {};
}

}  // namespace ghostd::server
