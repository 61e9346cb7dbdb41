// Errors as values at boundaries (STYLE.md habit 10): loading and parsing
// return Result<T>; the message names the file, the field and what was expected.
#pragma once

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace ghostd::runtime {

struct Error {
  std::string message;
};

// Either a value or an Error. Thread-safety: a plain value type.
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  Result(Error error) : v_(std::move(error)) {}  // NOLINT(google-explicit-constructor)

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & {
    assert(ok());
    return std::get<0>(v_);
  }
  const T& value() const& {
    assert(ok());
    return std::get<0>(v_);
  }
  T&& value() && {
    assert(ok());
    return std::get<0>(std::move(v_));
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  const Error& error() const {
    assert(!ok());
    return std::get<1>(v_);
  }
  Error take_error() && { return std::get<1>(std::move(v_)); }

 private:
  std::variant<T, Error> v_;
};

// Result<void> equivalent.
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Error error) : error_(std::move(error.message)), failed_(true) {}  // NOLINT

  static Status ok_status() { return Status(); }
  bool ok() const { return !failed_; }
  explicit operator bool() const { return ok(); }
  Error error() const { return Error{error_}; }
  const std::string& message() const { return error_; }

 private:
  std::string error_;
  bool failed_ = false;
};

inline Error make_error(std::string message) { return Error{std::move(message)}; }

}  // namespace ghostd::runtime

// Propagates an error from an expression returning Result<T> or Status.
#define GHOSTD_TRY_STATUS(expr)                      \
  do {                                               \
    auto ghostd_try_status_ = (expr);                \
    if (!ghostd_try_status_.ok()) {                  \
      return ::ghostd::runtime::Error{               \
          ghostd_try_status_.error().message};       \
    }                                                \
  } while (0)
