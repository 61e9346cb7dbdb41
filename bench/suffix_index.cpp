// bench_suffix_index [DIR] [--tokens N]
// Times the SuffixIndex operations the engine runs per keystroke and per step
// (medians): indexing a fresh prompt, re-indexing it after a one-token edit in
// the middle or at the end, propose(), and dropping the document.
// The prompt is code-like: the C++ sources under DIR (default: this repo's
// runtime/) split into identifier, number, space and punctuation runs, each
// distinct run one token id, first N tokens (default 8192).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

#include "runtime/speculative/suffix_index.h"

namespace fs = std::filesystem;
using ghostd::runtime::SuffixIndex;
using ghostd::runtime::SuffixProposal;
using Clock = std::chrono::steady_clock;

namespace {

std::vector<int32_t> code_tokens(const fs::path& dir, size_t want) {
  std::vector<fs::path> files;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec);
       it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) break;
    const auto ext = it->path().extension();
    if (it->is_regular_file(ec) && (ext == ".cpp" || ext == ".h")) files.push_back(it->path());
  }
  std::sort(files.begin(), files.end());
  std::unordered_map<std::string, int32_t> vocab;
  std::vector<int32_t> tokens;
  auto kind = [](char c) {
    if (std::isalnum(static_cast<unsigned char>(c)) || c == '_') return 0;
    if (c == ' ' || c == '\n' || c == '\t') return 1;
    return 2;
  };
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string text = ss.str();
    size_t i = 0;
    while (i < text.size() && tokens.size() < want) {
      size_t j = i + 1;
      // Punctuation is one char per token; words and whitespace are runs.
      if (kind(text[i]) != 2) {
        while (j < text.size() && kind(text[j]) == kind(text[i])) ++j;
      }
      const auto [it, added] =
          vocab.emplace(text.substr(i, j - i), static_cast<int32_t>(vocab.size()));
      tokens.push_back(it->second);
      i = j;
    }
    if (tokens.size() >= want) break;
  }
  return tokens;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

template <class F>
double time_us(F&& f) {
  const auto t0 = Clock::now();
  f();
  return std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  fs::path dir = fs::path(__FILE__).parent_path().parent_path() / "runtime";
  size_t want = 8192;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--tokens") == 0 && i + 1 < argc) {
      want = std::strtoul(argv[++i], nullptr, 10);
    } else {
      dir = argv[i];
    }
  }
  const std::vector<int32_t> prompt = code_tokens(dir, want);
  if (prompt.size() < 64) {
    std::fprintf(stderr, "bench_suffix_index: found only %zu tokens under %s\n", prompt.size(),
                 dir.c_str());
    return 1;
  }
  std::printf("prompt: %zu tokens from %s (max_depth %d)\n", prompt.size(), dir.c_str(),
              ghostd::runtime::SuffixIndexConfig{}.max_depth);

  // 1. A fresh prompt (a newly opened document).
  std::vector<double> fresh;
  size_t nodes = 0, bytes = 0;
  for (int r = 0; r < 11; ++r) {
    SuffixIndex index;
    fresh.push_back(time_us([&] { index.update_document("doc", prompt); }));
    nodes = index.num_nodes();
    bytes = index.memory_bytes();
  }
  std::printf(
      "update_document, fresh prompt:          %9.1f us  (%zu nodes, %.2f MB, document + global)\n",
      median(fresh), nodes, bytes / 1e6);

  // 2. Keystrokes: one token inserted in the middle and removed again; one
  // token typed at the end and removed again.
  SuffixIndex index;
  index.update_document("doc", prompt);
  std::vector<int32_t> middle = prompt;
  middle.insert(middle.begin() + static_cast<std::ptrdiff_t>(middle.size() / 2), 7);
  std::vector<int32_t> end = prompt;
  end.push_back(7);
  std::vector<double> edit_middle, edit_end;
  for (int r = 0; r < 2001; ++r) {
    const bool back = r % 2 == 1;
    edit_middle.push_back(time_us([&] { index.update_document("doc", back ? prompt : middle); }));
  }
  for (int r = 0; r < 2001; ++r) {
    const bool back = r % 2 == 1;
    edit_end.push_back(time_us([&] { index.update_document("doc", back ? prompt : end); }));
  }
  // Two edits at once: 40 tokens cut at 10% (the prompt builder dropping lines
  // from the prefix window) and a keystroke 300 tokens before the end.
  std::vector<int32_t> cut = prompt;
  cut.erase(cut.begin() + static_cast<std::ptrdiff_t>(cut.size() / 10),
            cut.begin() + static_cast<std::ptrdiff_t>(cut.size() / 10 + 40));
  cut.insert(cut.end() - 300, 7);
  std::vector<double> edit_two;
  size_t reindexed = 0;
  for (int r = 0; r < 2001; ++r) {
    const bool back = r % 2 == 1;
    edit_two.push_back(time_us([&] { index.update_document("doc", back ? prompt : cut); }));
    reindexed = index.last_reindexed();
  }
  index.update_document("doc", prompt);
  std::printf("update_document, 1-token edit mid:      %9.2f us\n", median(edit_middle));
  std::printf("update_document, 1-token edit end:      %9.2f us\n", median(edit_end));
  std::printf("update_document, 40-token cut + 1 edit: %9.2f us  (%zu windows re-indexed)\n",
              median(edit_two), reindexed);

  // 3. propose(): the context is the prompt cut at a position (as when the
  // cursor sits there), 8 tokens asked.
  std::vector<double> hit;
  size_t proposed = 0, drafted = 0;
  double score = 0;
  for (size_t pos = 64; pos < prompt.size(); pos += 7) {
    const std::span<const int32_t> context(prompt.data(), pos);
    SuffixProposal p;
    hit.push_back(time_us([&] { p = index.propose("doc", context, 8); }));
    proposed += !p.tokens.empty();
    drafted += p.tokens.size();
    score += p.score;
  }
  std::printf(
      "propose, context cut in the prompt:     %9.2f us  (%zu/%zu proposed, %.2f tokens and "
      "score %.2f on average)\n",
      median(hit), proposed, hit.size(), proposed ? double(drafted) / proposed : 0.0,
      proposed ? score / proposed : 0.0);
  // The same, with the last 4 tokens taken from elsewhere in the prompt: only
  // short matches, so every candidate length is tried.
  std::vector<double> mixed;
  proposed = drafted = 0;
  score = 0;
  for (size_t pos = 64; pos < prompt.size(); pos += 7) {
    std::vector<int32_t> context(prompt.begin(), prompt.begin() + static_cast<std::ptrdiff_t>(pos));
    const size_t from = (pos * 7919) % (prompt.size() - 4);
    context.insert(context.end(), prompt.begin() + static_cast<std::ptrdiff_t>(from),
                   prompt.begin() + static_cast<std::ptrdiff_t>(from + 4));
    SuffixProposal p;
    mixed.push_back(time_us([&] { p = index.propose("doc", context, 8); }));
    proposed += !p.tokens.empty();
    drafted += p.tokens.size();
    score += p.score;
  }
  std::printf(
      "propose, last 4 tokens from elsewhere:  %9.2f us  (%zu/%zu proposed, %.2f tokens and "
      "score %.2f on average)\n",
      median(mixed), proposed, mixed.size(), proposed ? double(drafted) / proposed : 0.0,
      proposed ? score / proposed : 0.0);
  std::vector<double> miss;
  const std::vector<int32_t> unseen = {-1, -2, -3, -4, -5, -6, -7, -8};
  for (int r = 0; r < 1001; ++r) {
    miss.push_back(time_us([&] { (void)index.propose("doc", unseen, 8); }));
  }
  std::printf("propose, no match (doc + global):       %9.2f us\n", median(miss));

  // 4. Dropping a document while another stays (eviction takes its windows
  // out of the global trie, which keeps the other's).
  std::vector<int32_t> other_prompt = code_tokens(dir, 2 * want);
  other_prompt.erase(other_prompt.begin(),
                     other_prompt.begin() +
                         static_cast<std::ptrdiff_t>(std::min(other_prompt.size(), prompt.size())));
  std::vector<double> drop;
  for (int r = 0; r < 11; ++r) {
    SuffixIndex two;
    two.update_document("other", other_prompt);
    two.update_document("doc", prompt);
    drop.push_back(time_us([&] { two.remove_document("doc"); }));
  }
  std::printf("%-40s%9.1f us  (another document of %zu tokens stays)\n",
              "remove_document:", median(drop), other_prompt.size());
  return 0;
}
