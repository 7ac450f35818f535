// Fault injection for the crash/resume tests. RESHARD_FAULT in the
// environment names a point and optionally the rank and the occurrence:
//   RESHARD_FAULT=<point>[:rank=K][:after=N]
// The matching rank dies at once (SIGKILL, no clean-up) the N-th time (default
// 1st) it passes the point. Unset, every check is a cheap no-op.
#pragma once

#include <string>

namespace reshard::fault {

// Reads RESHARD_FAULT; call once the rank is known.
void configure(int rank);

// Dies here when the configured point, rank and occurrence match.
void point(const char* name);

// True when the next point(name) call on this rank will die, so a caller
// can first leave behind what a crash there would leave.
bool fires_next(const char* name);

// True when the configured point is `name` on this rank (for faults that are
// not crashes, e.g. "drop-entry").
bool active(const char* name);

}  // namespace reshard::fault
