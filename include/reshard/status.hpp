// Status and Result<T>: the library's only error channel. Exceptions are
// confined to the edges (apps/, the Python wrapper).
#pragma once

#include <cstdlib>
#include <string>
#include <utility>
#include <variant>

namespace reshard {

// The numeric values are the process exit codes the CLI promises.
enum class ErrorKind : int {
  kInternal = 1,
  kInvalidInput = 2,  // bad input or refused; nothing written
  kVerification = 3,  // fingerprints disagree; nothing published
  kStorage = 4,       // storage failure after retries
};

class [[nodiscard]] Status {
 public:
  Status() = default;
  static Status Ok() { return {}; }
  static Status Invalid(std::string message) { return {ErrorKind::kInvalidInput, std::move(message)}; }
  static Status Verification(std::string message) { return {ErrorKind::kVerification, std::move(message)}; }
  static Status Storage(std::string message) { return {ErrorKind::kStorage, std::move(message)}; }
  static Status Internal(std::string message) { return {ErrorKind::kInternal, std::move(message)}; }

  Status(ErrorKind kind, std::string message) : ok_(false), kind_(kind), message_(std::move(message)) {}

  bool ok() const { return ok_; }
  ErrorKind kind() const { return kind_; }
  int exit_code() const { return ok_ ? 0 : static_cast<int>(kind_); }
  const std::string& message() const { return message_; }

  // Prefixes the action and key, so errors read
  // "reading data/m/shard_3.npz: indptr length 5 does not match 4 rows".
  Status with_context(const std::string& action) const {
    if (ok_) return *this;
    return {kind_, action + ": " + message_};
  }

 private:
  bool ok_ = true;
  ErrorKind kind_ = ErrorKind::kInternal;
  std::string message_;
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : state_(std::move(value)) {}        // NOLINT(google-explicit-constructor)
  Result(Status status) : state_(std::move(status)) {  // NOLINT(google-explicit-constructor)
    if (std::get<Status>(state_).ok()) state_ = Status::Internal("Result constructed from an OK status");
  }

  bool ok() const { return std::holds_alternative<T>(state_); }
  Status status() const { return ok() ? Status::Ok() : std::get<Status>(state_); }

  T& value() & { return std::get<T>(state_); }
  const T& value() const& { return std::get<T>(state_); }
  T&& value() && { return std::get<T>(std::move(state_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> state_;
};

}  // namespace reshard

#define RESHARD_CONCAT_INNER(a, b) a##b
#define RESHARD_CONCAT(a, b) RESHARD_CONCAT_INNER(a, b)

#define RESHARD_RETURN_IF_ERROR(expr)                  \
  do {                                                 \
    ::reshard::Status reshard_status_ = (expr);        \
    if (!reshard_status_.ok()) return reshard_status_; \
  } while (0)

// `lhs` is a declaration or an lvalue, so it cannot be parenthesized.
// NOLINTBEGIN(bugprone-macro-parentheses)
#define RESHARD_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                  \
  if (!tmp.ok()) return tmp.status();                 \
  lhs = std::move(tmp).value()

#define RESHARD_ASSIGN_OR_RETURN(lhs, expr) \
  RESHARD_ASSIGN_OR_RETURN_IMPL(RESHARD_CONCAT(reshard_result_, __LINE__), lhs, expr)
// NOLINTEND(bugprone-macro-parentheses)
