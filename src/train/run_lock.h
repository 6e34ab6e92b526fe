// The run-directory lock: one trainer per run.dir. An exclusive flock on <run_dir>/.lock, taken
// before the trainer touches anything in the directory and held until the process exits (the
// kernel drops it when the process dies, however it dies). The file holds the holder's pid, host
// and start time so that the second trainer can say who has the directory. The file itself stays
// after the run: only the flock counts, and removing the file would let two processes lock two
// different files of the same name.
#pragma once
#include <string>

namespace llmtrain {

class RunLock {
 public:
  // Locks `run_dir` (which must exist) or throws InputError naming the directory and the holder.
  explicit RunLock(const std::string& run_dir);
  ~RunLock();
  RunLock(const RunLock&) = delete;
  RunLock& operator=(const RunLock&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
};

}  // namespace llmtrain
