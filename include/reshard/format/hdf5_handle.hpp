// RAII over HDF5 identifiers, and the one place HDF5's error stack becomes a
// Status. Every HDF5 call of the program goes through `checked` (ids) or
// `check` (herr_t), made while holding `hdf5_lock()`: Debian's parallel
// HDF5 is not built thread-safe, and the pipeline decodes and encodes on
// worker threads.
#pragma once

#include <hdf5.h>

#include <mutex>
#include <string>
#include <utility>

#include "reshard/status.hpp"

namespace reshard::hdf5 {

std::mutex& hdf5_lock();

// The innermost message of HDF5's error stack (its own printing is turned
// off), then the stack is cleared: "truncated file: eof = 96, ...".
std::string take_error_message();

class Handle {
 public:
  using Close = herr_t (*)(hid_t);
  Handle() = default;
  Handle(hid_t id, Close close) : id_(id), close_(close) {}
  Handle(Handle&& other) noexcept : id_(std::exchange(other.id_, H5I_INVALID_HID)), close_(other.close_) {}
  Handle& operator=(Handle&& other) noexcept {
    if (this != &other) {
      reset();
      id_ = std::exchange(other.id_, H5I_INVALID_HID);
      close_ = other.close_;
    }
    return *this;
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle() { reset(); }

  hid_t get() const { return id_; }

 private:
  void reset() {
    if (id_ >= 0 && close_ != nullptr) (void)close_(id_);
    id_ = H5I_INVALID_HID;
  }
  hid_t id_ = H5I_INVALID_HID;
  Close close_ = nullptr;
};

// An id from an HDF5 call, owned; a negative id is an error naming `what`
// and HDF5's reason.
Result<Handle> checked(hid_t id, Handle::Close close, const std::string& what);
// A herr_t (or htri_t) result: negative is an error.
Status check(herr_t result, const std::string& what);

}  // namespace reshard::hdf5
