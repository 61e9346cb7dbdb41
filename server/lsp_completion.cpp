// LspServer's completion requests (textDocument/completion and
// textDocument/inlineCompletion): the request's position and context
// become a CompletionCore job, the job's text becomes the one reply, and
// edits and $/cancelRequest cancel what is in flight. lsp_server.cpp has
// the session: lifecycle, documents, authentication.
#include "server/lsp_server.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <utility>

namespace ghostd::server {

namespace rt = ghostd::runtime;
using Clock = std::chrono::steady_clock;

namespace {

constexpr size_t kAlignBytes = 4096;  // prefix windows start on this grid, so keystrokes keep the start
constexpr size_t kMaxContextFiles = 8;

bool is_word_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

std::string trigger_name(bool inline_items, int kind) {
  if (inline_items) return kind == 1 ? "invoked" : "automatic";
  return kind == 2 ? "character" : kind == 3 ? "incomplete" : "invoked";
}

json empty_completion(bool inline_items) {
  if (inline_items) return {{"items", json::array()}};
  return {{"isIncomplete", true}, {"items", json::array()}};
}

}  // namespace

void LspServer::cancel_request(const json& params) {
  auto id = parse_cancel(params);
  if (!id.ok()) return;  // a malformed notification is ignored
  auto it = pending_.find(dump_json(*id));
  if (it == pending_.end()) return;  // already answered, or not cancellable
  core_.cancel(it->second->ticket, CompletionOutcome::kCancelled);
}

void LspServer::cancel_document_completions(const std::string& uri, CompletionOutcome why) {
  std::vector<std::string> keys;
  for (auto& [k, p] : pending_) {
    if (p->uri == uri) keys.push_back(k);
  }
  for (auto& k : keys) {
    auto it = pending_.find(k);
    if (it == pending_.end()) continue;
    if (why == CompletionOutcome::kCancelled) it->second->content_modified = true;
    core_.cancel(it->second->ticket, why);
  }
}

CompletionSettings LspServer::settings() const {
  CompletionSettings s;
  s.budget = {options_.context_budget, options_.suffix_tokens, options_.context_tokens};
  s.max_tokens = options_.max_tokens;
  s.deadline = std::chrono::milliseconds(options_.deadline_ms);
  s.post.max_lines = options_.max_lines;
  s.use_draft = options_.use_draft;
  return s;
}

void LspServer::complete(const json& params, ReplyOnce reply, bool inline_items) {
  const auto arrived = Clock::now();
  auto p = parse_document_position(params);
  if (!p.ok()) {
    reply(RpcError{ErrorCode::kInvalidParams, p.error().message});
    return;
  }
  const Document* doc = docs_.find(p->uri);
  if (!doc) {
    auto refused = refused_documents_.find(p->uri);
    reply(RpcError{ErrorCode::kInvalidParams, refused == refused_documents_.end()
                                                  ? "document is not open: " + p->uri
                                                  : "document " + p->uri + " is not open: " + refused->second});
    return;
  }
  std::string key = dump_json(reply.id());
  if (pending_.count(key)) {
    reply(RpcError{ErrorCode::kInvalidRequest, "a request with id " + key + " is already in flight"});
    return;
  }
  // Before the document's older request is superseded and before any
  // windowing or tokenizing: a refused request costs the session's event
  // loop only its parse, and changes nothing.
  if (!request_rate_.take()) {
    reply(RpcError{ErrorCode::kRequestFailed, "too many requests: more than " + std::to_string(request_rate_.rate()) +
                                                  " completions a second, the session's limit "
                                                  "(--max-requests-per-second); slow down"});
    return;
  }
  // A newer request for the document supersedes the older ones: they get an empty result now.
  cancel_document_completions(p->uri, CompletionOutcome::kSuperseded);
  if (pending_.size() >= static_cast<size_t>(options_.max_requests_in_flight)) {
    reply(RpcError{ErrorCode::kRequestFailed, "too many requests in flight: " + std::to_string(pending_.size()) +
                                                  " unanswered completions, the session's limit "
                                                  "(--max-requests-in-flight); wait for answers"});
    return;
  }

  ModelSnapshot model = model_.snapshot();
  if (model.phase != ModelSnapshot::Phase::kReady || !model.info) {
    reply(empty_completion(inline_items));
    if (metrics_) {  // every completion request gets its line, served or not
      CompletionRecord r;
      r.request_id = key;
      r.tenant = tenant_;
      r.session = context_.id;
      r.document = p->uri;
      r.method = inline_items ? "inline" : "completion";
      r.trigger = trigger_name(inline_items, p->trigger_kind);
      r.latency_ms = r.overhead_ms = std::chrono::duration<double, std::milli>(Clock::now() - arrived).count();
      r.outcome = "no_model";
      metrics_->record(std::move(r));
    }
    return;
  }

  const GapText& text = doc->text();
  size_t offset = doc->offset_of(p->position, encoding_);
  size_t line_start = text.line_start(text.line_of(offset));

  auto pending = std::make_unique<PendingCompletion>(std::move(reply));
  pending->uri = p->uri;
  pending->inline_items = inline_items;
  pending->cursor = doc->position_of(offset, encoding_);
  pending->trigger = trigger_name(inline_items, p->trigger_kind);
  pending->request_id = key;
  pending->arrived = arrived;
  size_t word_begin = offset;
  while (word_begin > line_start && is_word_char(text.at(word_begin - 1))) --word_begin;
  pending->word = text.substr(word_begin, offset - word_begin);
  pending->word_start = doc->position_of(word_begin, encoding_);

  // Text windows: sized from the token budget, the prefix start on a coarse
  // grid at a line start so it stays put while the user types.
  CompletionSettings st = settings();
  if (int ctx = model.info->context_length; ctx > 0) {
    // Prompt plus new tokens must fit the model's positions.
    st.max_tokens = std::min(st.max_tokens, ctx / 2);
    st.budget.max_prompt_tokens = std::min(st.budget.max_prompt_tokens, ctx - st.max_tokens);
    st.budget.suffix_tokens = std::min(st.budget.suffix_tokens, st.budget.max_prompt_tokens / 4);
    st.budget.context_tokens = std::min(st.budget.context_tokens, st.budget.max_prompt_tokens / 4);
  }
  size_t prefix_bytes = static_cast<size_t>(st.budget.max_prompt_tokens) * 4;
  size_t prefix_begin = 0;
  if (offset > prefix_bytes) {
    prefix_begin = (offset - prefix_bytes) / kAlignBytes * kAlignBytes;
    size_t line = text.line_of(prefix_begin);
    if (text.line_start(line) != prefix_begin && line + 1 < text.line_count()) {
      prefix_begin = std::min(offset, text.line_start(line + 1));
    }
  }
  CompletionInput in;
  in.document_id = p->uri;
  in.tenant = tenant_;
  in.session_id = context_.id;
  in.prefix = text.substr(prefix_begin, offset - prefix_begin);
  in.suffix = text.substr(offset, static_cast<size_t>(st.budget.suffix_tokens) * 8);
  in.line_prefix = text.substr(line_start, offset - line_start);
  in.path = p->uri;
  if (!root_path_.empty() && in.path.starts_with(root_path_)) {
    in.path = in.path.substr(root_path_.size());
    while (!in.path.empty() && in.path.front() == '/') in.path.erase(0, 1);
  }
  for (const Document* other : docs_.in_open_order()) {
    if (other == doc || in.context.size() >= kMaxContextFiles || st.budget.context_tokens <= 0) continue;
    std::string path = other->uri();
    if (!root_path_.empty() && path.starts_with(root_path_)) path = path.substr(root_path_.size());
    in.context.push_back(
        {path, other->text().substr(0, static_cast<size_t>(st.budget.context_tokens) * 4)});
  }

  PendingCompletion& ref = *pending;
  pending_[key] = std::move(pending);
  std::weak_ptr<int> alive = alive_;
  auto ticket = core_.start(std::move(in), model.info, st, [this, alive, key](CompletionOutput out) {
    if (alive.lock()) reply_completion(key, std::move(out));
  });
  if (pending_.count(key)) ref.ticket = ticket;  // done may already have run
}

void LspServer::reply_completion(const std::string& key, CompletionOutput out) {
  auto node = pending_.extract(key);
  if (node.empty()) return;
  PendingCompletion& p = *node.mapped();
  switch (out.outcome) {
    case CompletionOutcome::kCancelled:
      if (p.content_modified) {
        p.reply(RpcError{ErrorCode::kContentModified, "document changed; completion cancelled"});
      } else {
        p.reply(RpcError{ErrorCode::kRequestCancelled, "request cancelled"});
      }
      break;
    case CompletionOutcome::kError:
      p.reply(RpcError{ErrorCode::kRequestFailed, "completion failed: " + out.error});
      break;
    case CompletionOutcome::kSuperseded:
      p.reply(empty_completion(p.inline_items));
      break;
    case CompletionOutcome::kOk:
    case CompletionOutcome::kExpired: {
      json items = json::array();
      if (!out.text.empty()) {
        if (p.inline_items) {
          items.push_back(to_json(InlineCompletionItem{out.text, {p.cursor, p.cursor}}));
        } else {
          std::string full = p.word + out.text;
          std::string label = full.substr(0, full.find('\n'));
          if (label.size() > 80) label.resize(80);
          items.push_back(to_json(CompletionItem{label, p.word, {p.word_start, p.cursor}, full}));
        }
      }
      if (p.inline_items) {
        p.reply(json{{"items", items}});
      } else {
        p.reply(json{{"isIncomplete", false}, {"items", items}});
      }
      break;
    }
  }
  if (metrics_) {
    CompletionRecord r;
    r.request_id = p.request_id;
    r.tenant = tenant_;
    r.session = context_.id;
    r.document = p.uri;
    r.method = p.inline_items ? "inline" : "completion";
    r.trigger = p.trigger;
    r.prompt_tokens = out.metrics.prompt_tokens ? out.metrics.prompt_tokens : out.prompt_tokens;
    r.reused_tokens = out.metrics.reused_tokens;
    r.queue_ms = out.metrics.queue_ms;
    r.ttft_ms = out.metrics.ttft_ms;
    r.total_ms = out.metrics.total_ms;
    r.generated_tokens = out.metrics.generated_tokens;
    r.tokens_per_s = out.metrics.total_ms > 0 ? out.metrics.generated_tokens * 1000.0 / out.metrics.total_ms : 0;
    r.draft_proposed = out.metrics.draft_proposed;
    r.draft_accepted = out.metrics.draft_accepted;
    std::copy(std::begin(out.metrics.drafts), std::end(out.metrics.drafts), std::begin(r.drafts));
    r.batch_size = out.metrics.max_batch_size;
    r.replica = out.metrics.replica;
    r.server_ms = out.server_ms;
    r.latency_ms = std::chrono::duration<double, std::milli>(Clock::now() - p.arrived).count();
    r.overhead_ms = std::max(0.0, r.latency_ms - out.metrics.total_ms);
    r.outcome = p.content_modified && out.outcome == CompletionOutcome::kCancelled
                    ? "cancelled"
                    : completion_outcome_name(out.outcome);
    metrics_->record(std::move(r));
  }
}

}  // namespace ghostd::server
