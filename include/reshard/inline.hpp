// For what per-entry loops call (the callbacks of
// npz::SparseMatrix::for_each_entry_in and
// LoadedSource::for_each_global_entry_in, the fingerprint's hash): with a
// dozen instantiations of a loop per caller, GCC stops inlining them and
// makes a call per entry (perf on stage_bench: a quarter of the bucket's
// first pass went to the callback's push, pop and stack adjustment).
#pragma once

#if defined(__GNUC__) || defined(__clang__)
#define RESHARD_ALWAYS_INLINE __attribute__((always_inline))
#else
#define RESHARD_ALWAYS_INLINE
#endif
