#include "server/auth.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <algorithm>
#include <fstream>
#include <sstream>

namespace ghostd::server {

using ghostd::runtime::Error;
using ghostd::runtime::Result;

namespace {

std::array<unsigned char, 32> digest(std::string_view s) {
  std::array<unsigned char, 32> d{};
  SHA256(reinterpret_cast<const unsigned char*>(s.data()), s.size(), d.data());
  return d;
}

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\r';
}

}  // namespace

Result<TokenTable> TokenTable::load(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error{"--token-file " + path.string() + ": cannot read the file"};
  std::stringstream ss;
  ss << in.rdbuf();
  return parse(ss.str(), "--token-file " + path.string());
}

Result<TokenTable> TokenTable::parse(std::string_view text, const std::string& origin) {
  TokenTable t;
  size_t line_no = 0;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    ++line_no;
    while (!line.empty() && is_space(line.front())) line.remove_prefix(1);
    while (!line.empty() && is_space(line.back())) line.remove_suffix(1);
    if (line.empty() || line.front() == '#') continue;
    size_t sp = std::find_if(line.begin(), line.end(), is_space) - line.begin();
    std::string_view tenant = line.substr(0, sp);
    std::string_view token = sp < line.size() ? line.substr(sp) : std::string_view{};
    while (!token.empty() && is_space(token.front())) token.remove_prefix(1);
    const std::string where = origin + " line " + std::to_string(line_no);
    if (token.empty()) return Error{where + ": expected 'TENANT TOKEN'"};
    if (std::any_of(token.begin(), token.end(), is_space)) {
      return Error{where + ": expected 'TENANT TOKEN' (a token has no spaces)"};
    }
    if (token.size() < 16)
      return Error{where + ": the token is shorter than 16 characters (too easy to guess)"};
    auto d = digest(token);
    for (const Entry& e : t.entries_) {
      if (e.digest == d)
        return Error{where + ": the token is already listed (tokens must be unique)"};
    }
    t.entries_.push_back({std::string(tenant), d});
  }
  if (t.entries_.empty()) return Error{origin + ": no tokens"};
  return t;
}

std::optional<std::string> TokenTable::tenant_for(std::string_view token) const {
  const auto d = digest(token);
  const Entry* found = nullptr;
  for (const Entry& e : entries_) {
    // Every entry is compared; the branch-free select keeps the loop's time
    // independent of which one matched.
    const bool eq = CRYPTO_memcmp(e.digest.data(), d.data(), d.size()) == 0;
    found = eq ? &e : found;
  }
  if (!found) return std::nullopt;
  return found->tenant;
}

std::chrono::milliseconds AuthThrottle::delay(const std::string& address, Clock::time_point now) {
  auto it = failures_.find(address);
  if (it == failures_.end()) return std::chrono::milliseconds(0);
  if (now - it->second.last > kForget) {
    failures_.erase(it);
    return std::chrono::milliseconds(0);
  }
  const int shift = std::min(it->second.count - 1, 15);
  return std::min<std::chrono::milliseconds>(kBase * (int64_t{1} << shift), kMax);
}

void AuthThrottle::record_failure(const std::string& address, Clock::time_point now) {
  if (!failures_.contains(address) && failures_.size() >= kMaxAddresses) {
    auto stalest = std::min_element(
        failures_.begin(), failures_.end(),
        [](const auto& a, const auto& b) { return a.second.last < b.second.last; });
    failures_.erase(stalest);
  }
  Failures& f = failures_[address];
  if (f.count > 0 && now - f.last > kForget) f.count = 0;
  ++f.count;
  f.last = now;
}

void AuthThrottle::record_success(const std::string& address) {
  failures_.erase(address);
}

}  // namespace ghostd::server
