// A non-owning view of one weight tensor inside a mapped model file (or a
// buffer owned by the WeightStore).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/core/dtype.h"

namespace ghostd::runtime {

// Thread-safety: a plain value; the bytes it points to are read-only and
// live as long as the object that handed out the view.
struct TensorView {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;  // row-major, outermost first (PyTorch order)
  const std::byte* data = nullptr;
  size_t nbytes = 0;

  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
  // Product of all but the last dimension (1 for a 0-d or 1-d tensor).
  int64_t rows() const {
    int64_t n = 1;
    for (size_t i = 0; i + 1 < shape.size(); ++i) n *= shape[i];
    return n;
  }
  // Last dimension (1 for a 0-d tensor).
  int64_t cols() const { return shape.empty() ? 1 : shape.back(); }
};

// "[2, 3]" for error messages.
inline std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

}  // namespace ghostd::runtime
