#include "reshard/format/hdf5_handle.hpp"

namespace reshard::hdf5 {
namespace {

herr_t keep_innermost(unsigned /*n*/, const H5E_error2_t* error, void* out) {
  // Walked upward: the first frame is the innermost, the actual reason.
  auto* message = static_cast<std::string*>(out);
  if (message->empty() && error != nullptr && error->desc != nullptr) *message = error->desc;
  return 0;
}

}  // namespace

std::mutex& hdf5_lock() {
  static std::mutex lock;
  // HDF5 prints its whole stack to stderr on every failure by default; the
  // program reports one line instead.
  static const bool quiet = [] {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    return true;
  }();
  (void)quiet;
  return lock;
}

std::string take_error_message() {
  std::string message;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, keep_innermost, &message);
  H5Eclear2(H5E_DEFAULT);
  return message.empty() ? "HDF5 gave no reason" : message;
}

Result<Handle> checked(hid_t id, Handle::Close close, const std::string& what) {
  if (id < 0) return Status::Invalid(what + ": " + take_error_message());
  return Handle(id, close);
}

Status check(herr_t result, const std::string& what) {
  if (result < 0) return Status::Invalid(what + ": " + take_error_message());
  return Status::Ok();
}

}  // namespace reshard::hdf5
