// POSIX files: plain paths and file:// URLs. Atomic writes are a temp file in
// the same directory, fsync, rename, fsync of the directory.
#pragma once

#include <memory>

#include "reshard/store/store.hpp"

namespace reshard {

std::shared_ptr<Store> make_posix_store();

}  // namespace reshard
