// The one way the library spreads work over threads inside a rank: a fixed
// set of independent tasks, no pool outliving the call.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <thread>
#include <vector>

namespace reshard {

// Runs task(0) .. task(count - 1) on up to `threads` threads (the caller's
// included) and returns when all are done. Tasks must not throw.
template <typename Task>
void run_in_parallel(std::size_t count, int threads, Task&& task) {
  const std::size_t workers = std::min<std::size_t>(count, static_cast<std::size_t>(std::max(1, threads)));
  if (workers <= 1) {
    for (std::size_t i = 0; i < count; ++i) task(i);
    return;
  }
  std::atomic<std::size_t> next{0};
  auto work = [&] {
    for (std::size_t i = next++; i < count; i = next++) task(i);
  };
  std::vector<std::thread> helpers;
  for (std::size_t t = 1; t < workers; ++t) helpers.emplace_back(work);
  work();
  for (auto& helper : helpers) helper.join();
}

// Runs helper(0) .. helper(helpers - 1), each on a thread of its own, while
// the caller runs caller_task(); returns when all are done. For a pipeline
// whose stages wait on each other (the zip writer's compressors and the
// caller handing their output on in order): unlike run_in_parallel, no task
// can end up queued behind another on one thread. Tasks must not throw.
template <typename HelperTask, typename CallerTask>
void run_beside(int helpers, HelperTask&& helper, CallerTask&& caller_task) {
  std::vector<std::thread> threads;
  threads.reserve(static_cast<std::size_t>(std::max(0, helpers)));
  for (int t = 0; t < helpers; ++t) threads.emplace_back([&helper, t] { helper(static_cast<std::size_t>(t)); });
  caller_task();
  for (auto& thread : threads) thread.join();
}

// How many parts to split `items` into for `threads` threads: one per
// thread, but none smaller than `min_items_per_part` (below that, starting
// a thread costs more than it saves), and at least one.
inline std::uint64_t parallel_parts(std::uint64_t items, int threads, std::uint64_t min_items_per_part) {
  return std::max<std::uint64_t>(
      1, std::min<std::uint64_t>(static_cast<std::uint64_t>(std::max(1, threads)), items / min_items_per_part));
}

// Cut point k of `total` items split into `parts` even ranges (k = 0 ..
// parts): floor(total * k / parts) without overflowing, for parts small
// enough that (total % parts) * k fits.
inline std::uint64_t even_cut(std::uint64_t total, std::uint64_t parts, std::uint64_t k) {
  return total / parts * k + total % parts * k / parts;
}

}  // namespace reshard
