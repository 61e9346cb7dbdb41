#include "server/auth.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace ghostd::server;

TEST_CASE("token file: tenants, comments, errors naming the line") {
  auto t = TokenTable::parse(
      "# tenant token\n\nalice  aaaaaaaaaaaaaaaa1\nbob\tbbbbbbbbbbbbbbbb2\r\nalice "
      "cccccccccccccccc3\n",
      "tokens");
  REQUIRE(t.ok());
  CHECK(t->size() == 3);
  CHECK(t->tenant_for("aaaaaaaaaaaaaaaa1") == "alice");
  CHECK(t->tenant_for("bbbbbbbbbbbbbbbb2") == "bob");
  CHECK(t->tenant_for("cccccccccccccccc3") == "alice");
  for (const char* wrong :
       {"", "aaaaaaaaaaaaaaaa", "aaaaaaaaaaaaaaaa1 ", "bob", "bbbbbbbbbbbbbbbb2x"}) {
    CAPTURE(wrong);
    CHECK_FALSE(t->tenant_for(wrong).has_value());
  }

  struct Bad {
    const char* text;
    const char* message;
  };
  const std::vector<Bad> bad = {
      {"alice\n", "tokens line 1: expected 'TENANT TOKEN'"},
      {"# c\nalice short\n",
       "tokens line 2: the token is shorter than 16 characters (too easy to guess)"},
      {"alice aaaaaaaaaaaaaaaa1 extra\n",
       "tokens line 1: expected 'TENANT TOKEN' (a token has no spaces)"},
      {"a aaaaaaaaaaaaaaaa1\nb aaaaaaaaaaaaaaaa1\n",
       "tokens line 2: the token is already listed (tokens must be unique)"},
      {"# nothing\n", "tokens: no tokens"},
  };
  for (const auto& b : bad) {
    auto r = TokenTable::parse(b.text, "tokens");
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message == b.message);
  }
  auto missing = TokenTable::load("/nonexistent/tokens");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().message == "--token-file /nonexistent/tokens: cannot read the file");
}

TEST_CASE("auth throttle: waits double per failure, capped, forgotten, per address") {
  AuthThrottle th;
  auto t0 = AuthThrottle::Clock::time_point{} + std::chrono::hours(1);
  using std::chrono::milliseconds;
  CHECK(th.delay("10.0.0.1", t0) == milliseconds(0));
  std::vector<milliseconds> seen;
  for (int i = 0; i < 8; ++i) {
    th.record_failure("10.0.0.1", t0);
    seen.push_back(th.delay("10.0.0.1", t0));
  }
  CHECK(seen == std::vector<milliseconds>{milliseconds(250), milliseconds(500), milliseconds(1000),
                                          milliseconds(2000), milliseconds(4000),
                                          milliseconds(8000), milliseconds(8000),
                                          milliseconds(8000)});
  CHECK(th.delay("10.0.0.2", t0) == milliseconds(0));  // other addresses are not slowed
  CHECK(th.delay("10.0.0.1", t0 + AuthThrottle::kForget + milliseconds(1)) == milliseconds(0));
  th.record_failure("10.0.0.3", t0);
  th.record_success("10.0.0.3");
  CHECK(th.delay("10.0.0.3", t0) == milliseconds(0));
  // Bounded memory: a flood of addresses keeps at most kMaxAddresses.
  for (size_t i = 0; i < AuthThrottle::kMaxAddresses + 10; ++i)
    th.record_failure("a" + std::to_string(i), t0);
  CHECK(th.tracked() == AuthThrottle::kMaxAddresses);
}
