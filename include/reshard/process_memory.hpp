// How the process takes memory from the kernel for its large working buffers
// (decoded shards, bucket blocks, exchange messages, assembled arrays).
//
// Every such buffer is fresh memory: its first touch faults in each page.
// With 4 KiB pages that cost more than the work itself on the test VM
// (perf: page faults and the memset that triggers them were ~40% of a job's
// samples). Large blocks are therefore backed by transparent huge pages,
// 512x fewer faults, where the kernel offers them (THP "madvise" mode, the
// common default).
#pragma once

#include <cstddef>

namespace reshard {

// Blocks of at least this size are mmapped by malloc (configure_process_memory
// sets the threshold below it) and advised to use huge pages.
inline constexpr std::size_t kHugePageMinBytes = std::size_t{4} << 20;

// Call first thing in main. Large blocks become their own mappings, unmapped
// on free, so the resident set follows --memory-limit's model (glibc would
// otherwise raise its mmap threshold after a large free and keep the memory
// in its heap).
void configure_process_memory();

// False when RESHARD_HUGE_PAGES=0 is set (for nodes where khugepaged or
// compaction stalls hurt more than faults do).
bool huge_pages_wanted();

// madvise(MADV_HUGEPAGE) over the whole pages of [p, p + bytes), before
// anything touches them. Errors (no THP in this kernel) leave 4 KiB pages.
void advise_huge_pages(void* p, std::size_t bytes);

// Gives the whole pages inside [p, p + bytes) back to the kernel
// (MADV_DONTNEED) while the memory stays allocated: for a buffer's part that
// is done with before the whole buffer is. Those pages read as zeros
// afterwards; the partial pages at either end keep their bytes, so the
// neighbours of the range are untouched.
void release_pages_inside(const void* p, std::size_t bytes);

}  // namespace reshard
