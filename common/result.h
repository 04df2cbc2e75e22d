// SPDX-License-Identifier: Apache-2.0
//
// Result<T>: the one error idiom of flurry's IO path.
//
// A Result holds either a value or a negative errno (e.g. -EIO, -EINVAL).
// Completion callbacks never throw; they receive a Result or a plain int
// (>= 0 success, < 0 negative errno), the liburing convention.
#pragma once

#include <cassert>
#include <cerrno>
#include <cstring>
#include <string>
#include <utility>
#include <variant>

namespace flurry {

// Human-readable text for a negative errno.
inline std::string errstr(int neg_errno) {
  return std::string(strerror(neg_errno < 0 ? -neg_errno : neg_errno));
}

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}                    // NOLINT
  static Result error(int neg_errno) {
    assert(neg_errno < 0);
    return Result(Err{neg_errno});
  }
  bool ok() const { return std::holds_alternative<T>(v_); }
  explicit operator bool() const { return ok(); }
  int err() const { return ok() ? 0 : std::get<Err>(v_).code; }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() { return value(); }

 private:
  struct Err { int code; };
  explicit Result(Err e) : v_(e) {}
  std::variant<T, Err> v_;
};

// Status: success or a negative errno plus a message, for control paths
// (configuration, metadata, command line) where a sentence helps the user.
class [[nodiscard]] Status {
 public:
  Status() = default;
  static Status Ok() { return Status(); }
  static Status Error(int neg_errno, std::string msg) {
    Status s;
    s.code_ = neg_errno < 0 ? neg_errno : -neg_errno;
    s.msg_ = std::move(msg);
    return s;
  }
  bool ok() const { return code_ == 0; }
  int code() const { return code_; }
  const std::string& message() const { return msg_; }
  std::string ToString() const {
    if (ok()) return "OK";
    return msg_.empty() ? errstr(code_) : msg_;
  }

 private:
  int code_ = 0;
  std::string msg_;
};

}  // namespace flurry
