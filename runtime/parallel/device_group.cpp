#include "runtime/parallel/device_group.h"

#include <algorithm>
#include <set>
#include <thread>

namespace ghostd::runtime {

std::vector<Backend*> DeviceGroup::backend_list() const {
  std::vector<Backend*> out;
  for (const auto& b : backends) out.push_back(b.get());
  return out;
}

std::vector<Communicator*> DeviceGroup::comm_list() const {
  std::vector<Communicator*> out;
  for (const auto& c : comms) out.push_back(c.get());
  return out;
}

namespace {

// The GPU index of "cuda:N", or -1.
int cuda_index(std::string_view d) {
  if (!d.starts_with("cuda:")) return -1;
  const std::string n(d.substr(5));
  if (n.empty() || !std::all_of(n.begin(), n.end(), [](char c) { return c >= '0' && c <= '9'; }) || n.size() > 4)
    return -1;
  return std::stoi(n);
}

}  // namespace

Result<std::vector<std::string>> resolve_devices(std::string_view list, int tp, std::string_view device) {
  if (tp < 0 || tp > 64) return Error{"--tensor-parallel " + std::to_string(tp) + ": expected 1 to 64"};
  std::vector<std::string> out;
  if (!list.empty()) {
    size_t at = 0;
    while (at <= list.size()) {
      const size_t comma = std::min(list.find(',', at), list.size());
      std::string d(list.substr(at, comma - at));
      if (d == "cuda") d = "cuda:" + std::to_string(out.size());
      if (d != "cpu" && cuda_index(d) < 0)
        return Error{"--devices: \"" + d + "\" is not a device; expected cpu or cuda:N, comma-separated"};
      out.push_back(d);
      at = comma + 1;
    }
    if (tp > 0 && tp != static_cast<int>(out.size()))
      return Error{"--tensor-parallel " + std::to_string(tp) + " with " + std::to_string(out.size()) +
                   " --devices; give one device per rank (or drop --tensor-parallel)"};
  } else {
    const int n = std::max(tp, 1);
    if (n == 1) return std::vector<std::string>{std::string(device)};
    if (device == "cpu") return std::vector<std::string>(static_cast<size_t>(n), "cpu");
    if (device == "cuda" || device == "auto") {
      for (int r = 0; r < n; ++r) out.push_back("cuda:" + std::to_string(r));
      return out;
    }
    return Error{"--tensor-parallel " + std::to_string(n) + " with --device " + std::string(device) +
                 ": name each rank's GPU with --devices cuda:0,cuda:1,..."};
  }
  const bool cpu = out.front() == "cpu";
  std::set<std::string> seen;
  for (const std::string& d : out) {
    if ((d == "cpu") != cpu) return Error{"--devices: CPU and GPU ranks cannot be mixed in one group"};
    if (d != "cpu" && !seen.insert(d).second)
      return Error{"--devices: " + d + " is named twice; each GPU holds one rank"};
  }
  return out;
}

Result<DeviceGroup> make_device_group(const std::vector<std::string>& devices, const DeviceGroupOptions& options) {
  if (devices.empty()) return Error{"no devices"};
  DeviceGroup g;
  g.devices = devices;
  const int n = static_cast<int>(devices.size());
  const bool cpu = devices.front() == "cpu";
  // CPU ranks share the machine's cores: each rank's pool gets its share.
  int threads = options.cpu_threads;
  if (cpu && n > 1) {
    const int total = threads > 0 ? threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    threads = std::max(1, total / n);
  }
  for (const std::string& d : devices) {
    auto b = make_backend(d, threads);
    if (!b) return Error{"--devices: " + d + ": " + b.error().message};
    g.backends.push_back(std::move(*b));
  }
  if (n == 1 && !options.always_communicate) return g;
  if (cpu) {
    auto comms = make_host_communicators(n, options.host);
    if (!comms) return comms.error();
    g.comms = std::move(*comms);
  } else {
    std::vector<int> ids;
    for (const std::string& d : devices) ids.push_back(cuda_index(d));
    auto comms = make_nccl_communicators(ids, options.host.timeout);
    if (!comms) return comms.error();
    g.comms = std::move(*comms);
  }
  return g;
}

}  // namespace ghostd::runtime
