#include "server/rate_limit.h"

#include <doctest/doctest.h>

using namespace ghostd::server;
using namespace std::chrono_literals;

TEST_CASE("request rate limiter: a full bucket's burst, then one token per 1/rate seconds") {
  RequestRateLimiter r(2);
  const auto t0 = RequestRateLimiter::Clock::now();
  CHECK(r.take(t0));
  CHECK(r.take(t0));
  CHECK_FALSE(r.take(t0));
  CHECK(r.wait(t0) == 500ms);
  const auto left = r.wait(t0 + 200ms);  // 300 ms, up to rounding
  CHECK(left > 299ms);
  CHECK(left <= 300ms);
  CHECK_FALSE(r.take(t0 + 400ms));
  CHECK(r.wait(t0 + 500ms) == RequestRateLimiter::Clock::duration::zero());
  CHECK(r.take(t0 + 500ms));
  // Idle time refills up to one second's worth, no more.
  CHECK(r.take(t0 + 10s));
  CHECK(r.take(t0 + 10s));
  CHECK_FALSE(r.take(t0 + 10s));
}

TEST_CASE("request rate limiter: rate 0 never limits") {
  RequestRateLimiter r(0);
  for (int i = 0; i < 1000; ++i) CHECK(r.take());
  CHECK(r.wait() == RequestRateLimiter::Clock::duration::zero());
}
