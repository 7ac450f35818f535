// S3 and S3-compatible object stores (s3://bucket/key), and Google Cloud
// Storage through its S3-compatible XML API (gs://bucket/key). Configured by
// the standard environment variables (docs/operations.md).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "reshard/store/store.hpp"

namespace reshard {

Result<StoreAndKey> open_s3_store(const std::string& url, const StoreOptions& options);

// Retries every S3/GCS store in this process has made so far (for reports).
std::uint64_t object_store_retries();

}  // namespace reshard
