// The host communicator: collectives over rank threads, their exact sums,
// and failure: a rank that never arrives fails the group after the timeout
// instead of hanging it.
#include "runtime/parallel/communicator.h"

#include <doctest/doctest.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <thread>
#include <vector>

#include "runtime/parallel/device_group.h"

namespace ghostd::runtime {
namespace {

using namespace std::chrono_literals;

// fn(rank, comm) on one thread per rank.
void on_ranks(std::vector<std::unique_ptr<Communicator>>& comms, const std::function<void(int, Communicator&)>& fn) {
  std::vector<std::thread> threads;
  for (size_t r = 0; r < comms.size(); ++r) threads.emplace_back([&, r] { fn(static_cast<int>(r), *comms[r]); });
  for (auto& t : threads) t.join();
}

float value(int rank, size_t i) { return 0.1f * static_cast<float>(rank + 1) + 1e-3f * static_cast<float>(i % 97); }

TEST_CASE("host communicator: all-reduce sums in rank order, the same bits on every rank") {
  for (int n : {1, 2, 3, 4}) {
    for (size_t count : {size_t{0}, size_t{1}, size_t{7}, size_t{1000}}) {
      auto comms = make_host_communicators(n);
      REQUIRE(comms.ok());
      std::vector<std::vector<float>> data(static_cast<size_t>(n), std::vector<float>(count));
      for (int r = 0; r < n; ++r)
        for (size_t i = 0; i < count; ++i) data[static_cast<size_t>(r)][i] = value(r, i);
      const auto orig = data;  // compared from memory: recomputing may contract to an FMA
      // Three collectives in a row: the buffers are reused at once.
      on_ranks(*comms, [&](int r, Communicator& c) {
        for (int rep = 0; rep < 3; ++rep) REQUIRE(c.all_reduce_sum(data[static_cast<size_t>(r)].data(), count, nullptr).ok());
      });
      std::vector<float> want(count);
      for (size_t i = 0; i < count; ++i) {
        float x = orig[0][i];
        for (int r = 1; r < n; ++r) x += orig[static_cast<size_t>(r)][i];
        for (int rep = 1; rep < 3; ++rep) {
          float y = x;
          for (int r = 1; r < n; ++r) y += x;
          x = y;
        }
        want[i] = x;
      }
      for (int r = 0; r < n; ++r) {
        CAPTURE(n);
        CAPTURE(count);
        // Bit for bit (no NaN or signed zero here, so == on the values is that).
        CHECK(data[static_cast<size_t>(r)] == want);
      }
    }
  }
}

TEST_CASE("host communicator: all-gather and broadcast") {
  const int n = 3;
  const size_t count = 5;
  auto comms = make_host_communicators(n);
  REQUIRE(comms.ok());
  std::vector<std::vector<float>> in(n, std::vector<float>(count)), out(n, std::vector<float>(count * n, -1.0f)),
      bc(n, std::vector<float>(count));
  for (int r = 0; r < n; ++r)
    for (size_t i = 0; i < count; ++i) {
      in[static_cast<size_t>(r)][i] = value(r, i);
      bc[static_cast<size_t>(r)][i] = static_cast<float>(r);
    }
  on_ranks(*comms, [&](int r, Communicator& c) {
    const size_t ur = static_cast<size_t>(r);
    REQUIRE(c.all_gather(in[ur].data(), count, out[ur].data(), nullptr).ok());
    REQUIRE(c.broadcast(bc[ur].data(), count, 1, nullptr).ok());
    REQUIRE(c.barrier().ok());
  });
  for (int r = 0; r < n; ++r)
    for (int src = 0; src < n; ++src)
      for (size_t i = 0; i < count; ++i) {
        CHECK(out[static_cast<size_t>(r)][static_cast<size_t>(src) * count + i] == in[static_cast<size_t>(src)][i]);
        CHECK(bc[static_cast<size_t>(r)][i] == 1.0f);
      }
  CHECK_FALSE((*comms)[0]->broadcast(bc[0].data(), count, 7, nullptr).ok());
}

TEST_CASE("host communicator: a rank that never arrives fails the group after the timeout") {
  auto comms = make_host_communicators(2, {.timeout = 150ms});
  REQUIRE(comms.ok());
  std::vector<float> x(4, 1.0f);
  const auto t0 = std::chrono::steady_clock::now();
  Status st = (*comms)[0]->all_reduce_sum(x.data(), x.size(), nullptr);  // rank 1 never comes
  const auto waited = std::chrono::steady_clock::now() - t0;
  REQUIRE_FALSE(st.ok());
  CHECK(st.message().find("waited 150 ms") != std::string::npos);
  CHECK(waited >= 150ms);
  CHECK(waited < 5s);
  // Sticky: every later collective of every rank fails at once.
  CHECK_FALSE((*comms)[1]->all_reduce_sum(x.data(), x.size(), nullptr).ok());
  CHECK_FALSE((*comms)[0]->barrier().ok());
  CHECK_FALSE((*comms)[1]->failure().empty());
}

TEST_CASE("host communicator: abort wakes a rank waiting in a collective") {
  auto comms = make_host_communicators(3, {.timeout = 60s});
  REQUIRE(comms.ok());
  Status waited;
  std::thread t([&] { waited = (*comms)[0]->barrier(); });
  std::this_thread::sleep_for(20ms);
  (*comms)[2]->abort("rank 2: out of memory");
  t.join();
  REQUIRE_FALSE(waited.ok());
  CHECK(waited.message().find("rank 2: out of memory") != std::string::npos);
}

TEST_CASE("devices: --devices and --tensor-parallel resolve to one device per rank, or a clear error") {
  auto d = resolve_devices("", 0, "cpu");
  REQUIRE(d.ok());
  CHECK(*d == std::vector<std::string>{"cpu"});
  d = resolve_devices("", 3, "cpu");
  REQUIRE(d.ok());
  CHECK(*d == std::vector<std::string>{"cpu", "cpu", "cpu"});
  d = resolve_devices("", 2, "cuda");
  REQUIRE(d.ok());
  CHECK(*d == std::vector<std::string>{"cuda:0", "cuda:1"});
  d = resolve_devices("cuda:1,cuda:0", 0, "auto");
  REQUIRE(d.ok());
  CHECK(*d == std::vector<std::string>{"cuda:1", "cuda:0"});
  auto err = [](Result<std::vector<std::string>> r) { return r.ok() ? std::string() : r.error().message; };
  CHECK(err(resolve_devices("cpu,cpu", 3, "cpu")).find("--tensor-parallel 3 with 2 --devices") != std::string::npos);
  CHECK(err(resolve_devices("cpu,cuda:0", 0, "cpu")).find("cannot be mixed") != std::string::npos);
  CHECK(err(resolve_devices("cuda:0,cuda:0", 0, "cpu")).find("named twice") != std::string::npos);
  CHECK(err(resolve_devices("gpu0", 0, "cpu")).find("not a device") != std::string::npos);
  CHECK(err(resolve_devices("", 2, "cuda:3")).find("--devices") != std::string::npos);
  CHECK(err(resolve_devices("", -1, "cpu")).find("--tensor-parallel") != std::string::npos);
  // A GPU that is not there (or a build without CUDA): the error names it.
  auto g = make_device_group({"cuda:7", "cuda:8"});
  REQUIRE_FALSE(g.ok());
  CHECK(g.error().message.find("cuda:7") != std::string::npos);
}

}  // namespace
}  // namespace ghostd::runtime
