// Who may use a shared daemon: bearer tokens naming tenants (--token-file),
// and the back-off that slows down an address guessing them.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "runtime/core/result.h"

namespace ghostd::server {

// The tokens of --token-file: one "TENANT TOKEN" per line; blank lines and
// lines starting with '#' are skipped. Several tokens may name one tenant.
// Thread-safety: immutable after load; const calls from any thread.
class TokenTable {
 public:
  static ghostd::runtime::Result<TokenTable> load(const std::filesystem::path& path);
  static ghostd::runtime::Result<TokenTable> parse(std::string_view text,
                                                   const std::string& origin);

  // The tenant of `token`, or nullopt. Constant time in the token's bytes:
  // every entry is compared by SHA-256 digest with CRYPTO_memcmp, no early
  // exit, so timing tells neither a prefix nor which entry matched.
  std::optional<std::string> tenant_for(std::string_view token) const;
  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    std::string tenant;
    std::array<unsigned char, 32> digest;
  };
  std::vector<Entry> entries_;
};

// Failed authentications per remote address: the n-th attempt after n-1
// recent failures waits kBase * 2^(n-1) (capped at kMax) before it is
// checked. Failures are forgotten kForget after the last one. Bounded: at
// most kMaxAddresses are tracked (the stalest is dropped).
// Thread-safety: not thread-safe; on the io_context's thread.
class AuthThrottle {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::milliseconds kBase{250};
  static constexpr std::chrono::milliseconds kMax{8000};
  static constexpr std::chrono::minutes kForget{10};
  static constexpr size_t kMaxAddresses = 10000;

  // How long an attempt from `address` waits now.
  std::chrono::milliseconds delay(const std::string& address, Clock::time_point now);
  void record_failure(const std::string& address, Clock::time_point now);
  void record_success(const std::string& address);
  size_t tracked() const { return failures_.size(); }

 private:
  struct Failures {
    int count = 0;
    Clock::time_point last;
  };
  std::unordered_map<std::string, Failures> failures_;
};

}  // namespace ghostd::server
