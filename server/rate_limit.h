// A per-session request rate limit: a token bucket one second deep
// (--max-requests-per-second), refilled continuously.
#pragma once

#include <algorithm>
#include <chrono>

namespace ghostd::server {

// Thread-safety: not thread-safe; used on the session's executor.
class RequestRateLimiter {
 public:
  using Clock = std::chrono::steady_clock;

  // rate <= 0: no limit. The bucket starts full.
  explicit RequestRateLimiter(int rate) : rate_(rate), tokens_(rate) {}

  // Takes one request's token; false when the bucket is empty.
  bool take(Clock::time_point now = Clock::now()) {
    if (rate_ <= 0) return true;
    tokens_ = tokens_at(now);
    at_ = now;
    if (tokens_ < 1) return false;
    tokens_ -= 1;
    return true;
  }

  // How long until a token is back (zero when one is there).
  Clock::duration wait(Clock::time_point now = Clock::now()) const {
    if (rate_ <= 0) return Clock::duration::zero();
    const double tokens = tokens_at(now);
    if (tokens >= 1) return Clock::duration::zero();
    return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>((1 - tokens) / rate_));
  }

  int rate() const { return rate_; }

 private:
  double tokens_at(Clock::time_point now) const {
    if (at_ == Clock::time_point{}) return tokens_;
    return std::min<double>(rate_, tokens_ + rate_ * std::chrono::duration<double>(now - at_).count());
  }

  int rate_;
  double tokens_;
  Clock::time_point at_{};
};

}  // namespace ghostd::server
