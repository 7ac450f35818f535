// For what per-entry loops call (the callbacks of
// npz::SparseMatrix::for_each_entry_in and
// LoadedSource::for_each_global_entry_in, the fingerprint's hash): with a
// dozen instantiations of a loop per caller, GCC stops inlining them and
// makes a call per entry (perf on stage_bench: the bucket's first pass spent
// most of its own time in the call's prologue and epilogue).
#pragma once

#if defined(__GNUC__) || defined(__clang__)
#define RESHARD_ALWAYS_INLINE __attribute__((always_inline))
#else
#define RESHARD_ALWAYS_INLINE
#endif
