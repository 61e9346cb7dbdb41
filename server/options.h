// Server configuration: CLI flags, then initializationOptions and
// workspace/didChangeConfiguration on top (docs/configuration.md).
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "runtime/core/result.h"

namespace ghostd::server {

struct ServerOptions {
  std::string model;        // --model PATH (HF directory or .gguf)
  // --model NAME=PATH (repeatable): the models clients may select by name
  // (initializationOptions.model). Socket clients can name nothing else.
  std::vector<std::pair<std::string, std::string>> named_models;
  int max_tokens = 64;      // --max-tokens: new tokens per completion
  int context_budget = 2048;  // --context-budget: prompt tokens in all
  int suffix_tokens = 128;    // --suffix-tokens: the suffix window
  int context_tokens = 512;   // --context-tokens: other open files
  int deadline_ms = 1500;     // --deadline-ms: a completion returns what it has after this
  int max_lines = 16;         // --max-lines: lines per completion
  std::string metrics_log;    // --metrics-log PATH
  int metrics_summary_s = 10;  // --metrics-summary-s
  std::string listen;          // --listen 127.0.0.1:PORT | unix:/path ; empty = stdio
  size_t max_message_bytes = 64u << 20;  // --max-message-bytes
  std::string log_level = "info";        // --log-level
  bool use_draft = true;                 // --no-draft turns speculative decoding off
  // --draft-model PATH: a draft model with the target's vocabulary; "none":
  // no draft model; empty: the bundled draft when the target is the bundled one.
  std::string draft_model;
  // --speculation LIST: the proposers to use (lookup,suffix,model,typed).
  bool spec_lookup = true, spec_suffix = true, spec_model = true, spec_typed = true;
  int max_draft = 8;                     // --max-draft: draft tokens per job and step
  bool draft_trees = true;               // --draft-trees: proposers may offer token trees
  int threads = 0;                       // --threads: CPU backend threads (0 = all cores)
  std::string device = "cpu";            // --device: cpu, cuda, cuda:N or auto
  // Tensor parallelism (runtime/parallel): --tensor-parallel N ranks (0:
  // as many as --devices names, else 1) on --devices LIST ("cpu,cpu",
  // "cuda:0,cuda:1"; empty: N ranks of --device).
  int tensor_parallel = 0;
  std::string devices;
  int kv_memory_mb = 0;                  // --kv-memory-mb: KV cache budget (0 = the engine's default)
  // --replicas M: engines behind one server, documents routed by affinity
  // (runtime/engine/replica_router.h); each loads its own copy of the model.
  int replicas = 1;

  // Serving remote editors (docs/deployment.md).
  std::string tls_cert;          // --tls-cert PEM: TLS on the TCP listener (with --tls-key)
  std::string tls_key;           // --tls-key PEM
  std::string token_file;        // --token-file: "TENANT TOKEN" lines; socket sessions must present one
  bool insecure = false;         // --insecure: allow a non-loopback listener without TLS and tokens
  int handshake_timeout_ms = 10000;  // --handshake-timeout-ms: TLS handshake, then the first message (initialize)
  int idle_timeout_s = 0;            // --idle-timeout-s: close a socket session silent this long, nothing in flight (0 = never)
  int max_documents = 1000;          // --max-open-documents per session
  size_t max_document_bytes = 256u << 20;  // --max-document-bytes: all open documents of a session together
  int max_requests_in_flight = 64;         // --max-requests-in-flight per session
  int max_requests_per_second = 0;         // --max-requests-per-second: completion requests per session (0 = no limit)
  int prompt_threads = 1;  // --prompt-threads: threads that build prompts, shared by all sessions (0 = the event loop)
  int share_window_ms = 1000;  // --share-window-ms: SchedulerConfig::share_window_ms

  bool tls() const { return !tls_cert.empty(); }
};

// The path --model NAME=PATH gives NAME, or nullopt.
const std::string* find_named_model(const ServerOptions& options, std::string_view name);

// Parses the flags above; anything else is an error naming the flag. argv[0]
// is skipped.
ghostd::runtime::Result<ServerOptions> parse_server_options(int argc, const char* const* argv);
const char* server_options_help();

// Applies the camelCase keys of initializationOptions / settings.ghostd
// (maxTokens, contextBudget, suffixTokens, contextTokens, deadlineMs,
// maxLines, useDraft; model, draftModel and metricsLog are accepted but only
// take effect at startup).
// Unknown keys are ignored; a wrong type is an
// error naming the key, and leaves `options` unchanged.
ghostd::runtime::Status apply_initialization_options(ServerOptions& options, const nlohmann::json& j);

}  // namespace ghostd::server
