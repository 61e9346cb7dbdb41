// RAII owners of CUDA runtime and cuBLAS resources, so a failed construction
// half-way or an early return never leaks a stream, a handle or memory.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <string>
#include <utility>

namespace ghostd::runtime::cuda {

inline std::string cuda_error_string(cudaError_t e) {
  return std::string(cudaGetErrorName(e)) + " (" + cudaGetErrorString(e) + ")";
}

// Owns a cudaStream_t. Thread-safety: a plain owner; the stream itself is
// used by one thread (the backend's).
class Stream {
 public:
  Stream() = default;
  explicit Stream(cudaStream_t s) : s_(s) {}
  Stream(Stream&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
  Stream& operator=(Stream&& o) noexcept {
    std::swap(s_, o.s_);
    return *this;
  }
  ~Stream() {
    if (s_) cudaStreamDestroy(s_);
  }
  cudaStream_t get() const { return s_; }

 private:
  cudaStream_t s_ = nullptr;
};

// Owns a cublasHandle_t. Thread-safety: as Stream.
class CublasHandle {
 public:
  CublasHandle() = default;
  explicit CublasHandle(cublasHandle_t h) : h_(h) {}
  CublasHandle(CublasHandle&& o) noexcept : h_(std::exchange(o.h_, nullptr)) {}
  CublasHandle& operator=(CublasHandle&& o) noexcept {
    std::swap(h_, o.h_);
    return *this;
  }
  ~CublasHandle() {
    if (h_) cublasDestroy(h_);
  }
  cublasHandle_t get() const { return h_; }

 private:
  cublasHandle_t h_ = nullptr;
};

// Owns a cudaMalloc allocation. Thread-safety: as Stream.
class DeviceMemory {
 public:
  DeviceMemory() = default;
  DeviceMemory(void* p, size_t bytes) : p_(p), bytes_(bytes) {}
  DeviceMemory(DeviceMemory&& o) noexcept
      : p_(std::exchange(o.p_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  DeviceMemory& operator=(DeviceMemory&& o) noexcept {
    std::swap(p_, o.p_);
    std::swap(bytes_, o.bytes_);
    return *this;
  }
  ~DeviceMemory() {
    if (p_) cudaFree(p_);
  }
  // cudaMalloc of `bytes` (at least 1); the error code on failure.
  static cudaError_t allocate(size_t bytes, DeviceMemory& out) {
    void* p = nullptr;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
    if (e == cudaSuccess) out = DeviceMemory(p, bytes);
    return e;
  }
  void* get() const { return p_; }
  template <class T>
  T* as() const {
    return static_cast<T*>(p_);
  }
  size_t bytes() const { return bytes_; }

 private:
  void* p_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace ghostd::runtime::cuda
