#include <cstdlib>
#include <string>

#include "runtime/core/backend.h"

#ifdef GHOSTD_HAVE_CUDA
#include "runtime/cuda/cuda_backend.h"
#endif

namespace ghostd::runtime {

Result<std::unique_ptr<Backend>> make_backend(std::string_view device, int cpu_threads) {
  if (device == "cpu") return make_cpu_backend({.threads = cpu_threads});
  const bool any = device == "auto";
  if (!any && device != "cuda" && !device.starts_with("cuda:"))
    return Error{"device \"" + std::string(device) + "\": expected cpu, cuda, cuda:N or auto"};
#ifdef GHOSTD_HAVE_CUDA
  int index = 0;
  if (device.starts_with("cuda:")) {
    std::string n(device.substr(5));
    char* end = nullptr;
    long v = std::strtol(n.c_str(), &end, 10);
    if (n.empty() || *end != '\0' || v < 0) return Error{"device \"" + std::string(device) + "\": bad GPU index"};
    index = static_cast<int>(v);
  }
  if (cuda_device_count() > index) return make_cuda_backend(index);
  if (!any) return Error{"device \"" + std::string(device) + "\": no such CUDA device"};
#else
  if (!any) return Error{"device \"" + std::string(device) + "\": this build has no CUDA backend (GHOSTD_CUDA=OFF)"};
#endif
  return make_cpu_backend({.threads = cpu_threads});
}

}  // namespace ghostd::runtime
