#include "train/fault.h"

#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>

#include "llmtrain/error.h"

namespace llmtrain {

FaultPoint fault_from_environment() {
  FaultPoint fp;
  const char* v = std::getenv("LLMTRAIN_FAULT");
  if (!v || !*v) return fp;
  std::string s(v), point;
  std::istringstream in(s);
  std::getline(in, point, ':');
  if (point == "after_step") fp.kind = FaultPoint::after_step;
  else if (point == "in_checkpoint") fp.kind = FaultPoint::in_checkpoint;
  else throw InputError("LLMTRAIN_FAULT: unknown point \"" + point + "\" in \"" + s + "\" (expected after_step or in_checkpoint)");
  std::string step, rank;
  std::getline(in, step, ':');
  std::getline(in, rank, ':');
  try {
    size_t used = 0;
    fp.step = std::stoll(step, &used);
    if (used != step.size() || fp.step < 1) throw std::invalid_argument(step);
    if (!rank.empty()) fp.rank = std::stoi(rank);
  } catch (const std::exception&) {
    throw InputError("LLMTRAIN_FAULT: expected <point>:<step >= 1>[:<rank>], got \"" + s + "\"");
  }
  return fp;
}

void maybe_fault(const FaultPoint& fp, FaultPoint::Kind kind, int64_t step, int rank) {
  if (fp.kind != kind || fp.step != step || (fp.rank >= 0 && fp.rank != rank)) return;
  // Only in a group's first attempt: a launcher restart must be able to get past the fault.
  const char* restart = std::getenv("LLMTRAIN_RESTART_COUNT");
  if (restart && std::string(restart) != "0") return;
  std::fflush(nullptr);
  std::fprintf(stderr, "llmtrain: LLMTRAIN_FAULT: killing rank %d at step %lld\n", rank, (long long)step);
  ::kill(::getpid(), SIGKILL);
  ::pause();
}

}  // namespace llmtrain
