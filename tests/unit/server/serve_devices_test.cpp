// Which devices each replica's ranks get from --devices, --tensor-parallel,
// --device and --replicas.
#include <doctest/doctest.h>

#include "server/serve.h"

namespace ghostd::server {
namespace {

using Devices = std::vector<std::string>;

std::string devices_or_error(const std::string& devices, int tp, const std::string& device, int index, int count) {
  ServerOptions o;
  o.devices = devices;
  o.tensor_parallel = tp;
  o.device = device;
  auto d = replica_devices(o, index, count);
  if (!d.ok()) return "error: " + d.error().message;
  std::string out;
  for (const auto& x : *d) out += (out.empty() ? "" : ",") + x;
  return out;
}

TEST_CASE("serve: devices of each replica's ranks") {
  // One replica.
  CHECK(devices_or_error("", 0, "cpu", 0, 1) == "cpu");
  CHECK(devices_or_error("", 2, "cpu", 0, 1) == "cpu,cpu");
  CHECK(devices_or_error("", 2, "cuda", 0, 1) == "cuda:0,cuda:1");
  CHECK(devices_or_error("cuda:1,cuda:0", 0, "cpu", 0, 1) == "cuda:1,cuda:0");
  // A list per rank is shared by every replica.
  CHECK(devices_or_error("cpu,cpu", 2, "cpu", 1, 2) == "cpu,cpu");
  CHECK(devices_or_error("", 2, "cuda", 1, 3) == "cuda:0,cuda:1");
  // A list per rank of every replica: replica i takes the i-th run.
  CHECK(devices_or_error("cuda:0,cuda:1,cuda:2,cuda:3", 2, "cpu", 0, 2) == "cuda:0,cuda:1");
  CHECK(devices_or_error("cuda:0,cuda:1,cuda:2,cuda:3", 2, "cpu", 1, 2) == "cuda:2,cuda:3");
  CHECK(devices_or_error("cuda:0,cuda:1", 0, "cpu", 1, 2) == "cuda:1");  // one GPU per replica
  CHECK(devices_or_error("cuda:0,cuda:1,cuda:2", 0, "cpu", 1, 2) == "cuda:0,cuda:1,cuda:2");
  // Counts that fit neither are an error naming both.
  CHECK(devices_or_error("cpu,cpu,cpu", 2, "cpu", 0, 2).find("--tensor-parallel 2 with 3 --devices") !=
        std::string::npos);
  CHECK(devices_or_error("cpu,cpu,cpu", 2, "cpu", 0, 1).find("--tensor-parallel 2 with 3 --devices") !=
        std::string::npos);
  CHECK(devices_or_error("cpu,cuda:0", 0, "cpu", 0, 1).find("cannot be mixed") != std::string::npos);
}

}  // namespace
}  // namespace ghostd::server
