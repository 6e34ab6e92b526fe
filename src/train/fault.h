// Fault injection for crash-safety tests: LLMTRAIN_FAULT=<point>:<step>[:<rank>] makes this
// process SIGKILL itself at a chosen place, so tests hit exact spots (a given step, the middle of
// a checkpoint write) whatever the machine's speed. Points:
//   after_step        after step N's metrics line is written
//   in_checkpoint     inside step N's checkpoint, after the files are written, before the commit
// <rank> limits it to one rank; it fires only in a launcher group's first attempt
// (LLMTRAIN_RESTART_COUNT unset or 0). Unset (the normal case) costs a getenv. Tests only.
#pragma once
#include <cstdint>

namespace llmtrain {

struct FaultPoint {
  enum Kind { none, after_step, in_checkpoint } kind = none;
  int64_t step = -1;
  int rank = -1;  // -1: every rank
};

// Parses LLMTRAIN_FAULT (InputError naming the variable on a malformed value).
FaultPoint fault_from_environment();
// SIGKILLs this process when `fp` names (kind, step) here (and this rank, if a rank is given).
void maybe_fault(const FaultPoint& fp, FaultPoint::Kind kind, int64_t step, int rank);

}  // namespace llmtrain
