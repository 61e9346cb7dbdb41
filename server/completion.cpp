#include "server/completion.h"

#include <asio/post.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <optional>

#include "server/utf8.h"

namespace ghostd::server {

namespace rt = ghostd::runtime;
using Clock = std::chrono::steady_clock;

const char* completion_outcome_name(CompletionOutcome o) {
  switch (o) {
    case CompletionOutcome::kOk: return "ok";
    case CompletionOutcome::kCancelled: return "cancelled";
    case CompletionOutcome::kSuperseded: return "superseded";
    case CompletionOutcome::kExpired: return "expired";
    case CompletionOutcome::kError: return "error";
  }
  return "error";
}

struct CompletionCore::Pending {
  rt::JobId job = 0;
  Done done;
  std::shared_ptr<const ModelInfo> model;
  std::string line_prefix;
  std::string suffix;
  PostprocessOptions post;
  std::vector<int32_t> streamed;
  std::shared_ptr<std::atomic<bool>> stop = std::make_shared<std::atomic<bool>>(false);
  std::unique_ptr<asio::steady_timer> timer;
  Clock::time_point submitted;
  int prompt_tokens = 0;
  double server_ms = 0;
  std::string heal;  // bytes the completion starts with that the document already has
  std::string document_id;
  std::string prefix_tail;  // the last bytes before the cursor (typed-through)
  Clock::time_point deadline;
};

namespace {

double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

// Drops an incomplete UTF-8 sequence at the end (a token boundary inside a
// character) and repairs anything else.
std::string clean_text(std::string s) {
  size_t i = s.size();
  size_t back = 0;
  while (i > 0 && back < 4 && utf8_is_continuation(static_cast<unsigned char>(s[i - 1]))) {
    --i;
    ++back;
  }
  if (i > 0) {
    unsigned char lead = static_cast<unsigned char>(s[i - 1]);
    if (lead >= 0xC0 && utf8_sequence_length(lead) > back + 1) s.resize(i - 1);
  }
  return is_valid_utf8(s) ? s : sanitize_utf8(s);
}

}  // namespace

CompletionCore::CompletionCore(asio::any_io_executor executor, rt::EngineInterface& engine, PromptPool* prompts)
    : executor_(executor), engine_(engine), prompts_(prompts), mailbox_(std::make_shared<Mailbox>(executor)) {}

CompletionCore::~CompletionCore() {
  std::vector<Ticket> tickets;
  for (auto& [t, _] : pending_) tickets.push_back(t);
  for (Ticket t : tickets) cancel(t, CompletionOutcome::kCancelled);
  mailbox_->close();
}

struct CompletionCore::Prepared {
  rt::CompletionJob job;
  std::string heal;
  std::string error;  // set: the prompt could not be built
  double ms = 0;      // time spent building
};

CompletionCore::Prepared CompletionCore::prepare(CompletionInput input, const ModelInfo& model,
                                                 const CompletionSettings& settings, const Shown* shown) {
  const auto begin = Clock::now();
  Prepared out;
  // The other documents move into the prompt input: no copy per keystroke.
  PromptInput prompt_in{input.prefix, input.suffix, std::move(input.path), {}, std::move(input.context)};
  Prompt prompt;
  try {
    prompt = build_prompt(model.fim, model.tokenizer, prompt_in, settings.budget);
    if (settings.use_draft && shown != nullptr)
      out.job.draft_hint = typed_through(*shown, input.prefix, prompt.heal, model);
  } catch (const std::exception& e) {
    out.error = std::string("prompt building failed: ") + e.what();
    return out;
  }
  rt::CompletionJob& job = out.job;
  job.prompt = std::move(prompt.tokens);
  job.document_id = input.document_id;
  job.priority = input.priority;
  job.tenant = input.tenant;
  job.session_id = input.session_id;
  job.cache_salt = input.tenant;  // isolation: no tenant reuses (or times) another's cached KV
  job.sampling = settings.sampling;
  job.stop.max_new_tokens = settings.max_tokens;
  job.stop.stop_token_ids = model.fim.stop_ids;
  job.use_draft = settings.use_draft;
  out.heal = prompt.heal;
  job.required_prefix = std::move(prompt.heal);
  out.ms = ms_since(begin);
  return out;
}

CompletionCore::Ticket CompletionCore::start(CompletionInput input, std::shared_ptr<const ModelInfo> model,
                                             const CompletionSettings& settings, Done done) {
  auto begin = Clock::now();
  Ticket ticket = next_ticket_++;
  auto p = std::make_unique<Pending>();
  p->done = std::move(done);
  p->model = model;
  p->line_prefix = std::move(input.line_prefix);  // prepare() does not read it
  p->suffix = input.suffix;
  p->post = settings.post;
  p->document_id = input.document_id;
  p->prefix_tail = input.prefix.substr(input.prefix.size() - std::min(input.prefix.size(), kShownTail));
  // The deadline runs from the request, prompt building included.
  p->deadline = Clock::now() + settings.deadline;
  p->timer = std::make_unique<asio::steady_timer>(executor_, settings.deadline + kDeadlineGrace);
  std::weak_ptr<int> alive = alive_;
  p->timer->async_wait([this, alive, ticket](const asio::error_code& ec) {
    if (!ec && alive.lock()) on_deadline(ticket);
  });
  std::optional<Shown> shown;
  if (auto it = shown_.find(input.document_id); it != shown_.end() && !it->second.text.empty()) shown = it->second;
  p->server_ms = ms_since(begin);
  pending_[ticket] = std::move(p);

  if (prompts_ == nullptr) {
    submit_prepared(ticket, prepare(std::move(input), *model, settings, shown ? &*shown : nullptr));
    return ticket;
  }
  // The task owns copies of everything it reads; its result comes back
  // through the mailbox and is dropped if the completion ended meanwhile.
  auto mailbox = mailbox_;
  const uint64_t session = input.session_id;
  prompts_->submit(session, [this, alive, mailbox, ticket, input = std::move(input), model = std::move(model),
                             settings, shown = std::move(shown)]() mutable {
    Prepared prepared = prepare(std::move(input), *model, settings, shown ? &*shown : nullptr);
    mailbox->post([this, alive, ticket, prepared = std::move(prepared)]() mutable {
      if (alive.lock()) submit_prepared(ticket, std::move(prepared));
    });
  });
  return ticket;
}

void CompletionCore::submit_prepared(Ticket ticket, Prepared prepared) {
  auto it = pending_.find(ticket);
  if (it == pending_.end()) return;  // cancelled, superseded or expired while its prompt was built
  Pending& p = *it->second;
  if (!prepared.error.empty()) {
    finish(ticket, CompletionOutcome::kError, {}, {}, std::move(prepared.error));
    return;
  }
  p.server_ms += prepared.ms;
  p.prompt_tokens = static_cast<int>(prepared.job.prompt.size());
  p.heal = std::move(prepared.heal);
  rt::CompletionJob job = std::move(prepared.job);
  job.deadline = p.deadline;

  // Callbacks run on the engine thread: they only post back here.
  std::weak_ptr<int> alive = alive_;
  auto mailbox = mailbox_;
  auto stop = p.stop;
  rt::JobCallbacks cb;
  cb.on_tokens = [this, alive, mailbox, stop, ticket](const std::vector<int32_t>& tokens) {
    if (stop->load(std::memory_order_relaxed)) return false;
    mailbox->post([this, alive, ticket, tokens] {
      if (alive.lock()) on_tokens(ticket, tokens);
    });
    return true;
  };
  cb.on_done = [this, alive, mailbox, ticket](rt::JobResult result) {
    mailbox->post([this, alive, ticket, result = std::move(result)]() mutable {
      if (alive.lock()) on_done(ticket, std::move(result));
    });
  };
  p.submitted = Clock::now();
  p.job = engine_.submit(std::move(job), std::move(cb));
}

std::vector<int32_t> CompletionCore::typed_through(const Shown& s, const std::string& prefix, const std::string& heal,
                                                   const ModelInfo& model) {
  // The cursor moved forward over t bytes of the last completion: the
  // prefix now ends with the old tail plus those bytes. The longest such t.
  const size_t max_t = std::min(s.text.size() - 1, kMaxTypedThrough);
  for (size_t t = max_t + 1; t-- > 0;) {
    const size_t need = s.tail.size() + t;
    if (prefix.size() < need) continue;
    if (prefix.compare(prefix.size() - need, s.tail.size(), s.tail) != 0) continue;
    if (prefix.compare(prefix.size() - t, t, s.text, 0, t) != 0) continue;
    // The job's output starts with the healed bytes, then the rest; it
    // continues the prompt, so no SentencePiece dummy-prefix space.
    std::vector<int32_t> ids = model.tokenizer.encode(heal + s.text.substr(t), false, false);
    if (ids.size() > kMaxHintTokens) ids.resize(kMaxHintTokens);
    return ids;
  }
  return {};
}

void CompletionCore::remember_shown(const std::string& document_id, std::string tail, const std::string& text) {
  if (text.empty() || document_id.empty()) return;
  if (shown_.size() >= kMaxShownDocuments && !shown_.count(document_id)) shown_.erase(shown_.begin());
  shown_[document_id] = Shown{std::move(tail), text};
}

void CompletionCore::on_tokens(Ticket t, std::vector<int32_t> tokens) {
  auto it = pending_.find(t);
  if (it == pending_.end()) return;
  auto& s = it->second->streamed;
  s.insert(s.end(), tokens.begin(), tokens.end());
}

void CompletionCore::on_done(Ticket t, rt::JobResult result) {
  if (!pending_.count(t)) return;  // already answered (cancelled, superseded, expired)
  CompletionOutcome outcome = CompletionOutcome::kOk;
  switch (result.status) {
    case rt::JobStatus::kFinished: outcome = CompletionOutcome::kOk; break;
    case rt::JobStatus::kExpired: outcome = CompletionOutcome::kExpired; break;
    case rt::JobStatus::kCancelled: outcome = CompletionOutcome::kCancelled; break;
    case rt::JobStatus::kFailed: outcome = CompletionOutcome::kError; break;
  }
  // Prefer the final token list; fall back to what streamed in.
  const std::vector<int32_t>& tokens = result.tokens.empty() ? pending_[t]->streamed : result.tokens;
  std::vector<int32_t> copy = tokens;
  finish(t, outcome, copy, result.metrics, std::move(result.error));
}

void CompletionCore::on_deadline(Ticket t) {
  auto it = pending_.find(t);
  if (it == pending_.end()) return;
  spdlog::debug("completion {} past its deadline; answering with {} streamed tokens", t, it->second->streamed.size());
  std::vector<int32_t> tokens = it->second->streamed;
  it->second->stop->store(true);
  if (it->second->job != 0) engine_.cancel(it->second->job);  // 0: its prompt is still being built
  finish(t, CompletionOutcome::kExpired, tokens, {}, {});
}

void CompletionCore::cancel(Ticket t, CompletionOutcome why) {
  auto it = pending_.find(t);
  if (it == pending_.end()) return;
  it->second->stop->store(true);
  if (it->second->job != 0) engine_.cancel(it->second->job);
  finish(t, why, {}, {}, {});
}

void CompletionCore::finish(Ticket t, CompletionOutcome outcome, const std::vector<int32_t>& tokens,
                            rt::JobMetrics metrics, std::string error) {
  auto node = pending_.extract(t);
  if (node.empty()) return;
  Pending& p = *node.mapped();
  if (p.timer) p.timer->cancel();
  auto begin = Clock::now();
  CompletionOutput out;
  out.outcome = outcome;
  out.error = std::move(error);
  out.metrics = metrics;
  if (out.metrics.total_ms == 0 && p.job != 0) out.metrics.total_ms = ms_since(p.submitted);
  if (out.metrics.generated_tokens == 0) out.metrics.generated_tokens = static_cast<int>(tokens.size());
  out.prompt_tokens = p.prompt_tokens;
  if (!tokens.empty() && (outcome == CompletionOutcome::kOk || outcome == CompletionOutcome::kExpired)) {
    std::vector<int32_t> ids = tokens;
    // Stop tokens end the text; whatever follows one is not part of it.
    const auto& stops = p.model->fim.stop_ids;
    auto cut = std::find_if(ids.begin(), ids.end(), [&](int32_t id) {
      return std::binary_search(stops.begin(), stops.end(), id);
    });
    ids.erase(cut, ids.end());
    try {
      std::string decoded = p.model->tokenizer.decode(ids);
      // The healed bytes are already in the document (a job cut short may
      // not have produced all of them).
      size_t k = 0;
      while (k < p.heal.size() && k < decoded.size() && decoded[k] == p.heal[k]) ++k;
      decoded.erase(0, k);
      std::string raw = clean_text(decoded);
      out.text = postprocess_completion(raw, {p.line_prefix, p.suffix}, p.post);
      remember_shown(p.document_id, std::move(p.prefix_tail), raw);
    } catch (const std::exception& e) {
      out.outcome = CompletionOutcome::kError;
      out.error = std::string("decoding the completion failed: ") + e.what();
    }
  }
  out.server_ms = p.server_ms + ms_since(begin);
  Done done = std::move(p.done);
  done(std::move(out));
}

}  // namespace ghostd::server
