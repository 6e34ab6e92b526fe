// Atomic checkpoint directories (DESIGN.md section 6). A checkpoint is `<run_dir>/ckpt/step_NNNNNNNN/`
// holding whatever the trainer writes (model.safetensors, optimizer_rank<r>.safetensors, state.json).
// It is filled in a temp directory, every file and the directory are fsynced, the directory is
// renamed into place, and only then is `<run_dir>/ckpt/latest` (the name of the newest step dir)
// replaced; so a crash at any point leaves the previous complete checkpoint reachable. "Complete"
// means state.json exists and parses. write() may create its files in any order: the directory only
// becomes visible under its final name after write() returns.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace llmtrain {

class CheckpointManager {
 public:
  // keep_last <= 0 keeps every checkpoint.
  CheckpointManager(std::string run_dir, int keep_last);

  // Creates <run_dir>/ckpt/.tmp_step_NNNNNNNN_<pid>/, calls write(tmpdir) to fill it, fsyncs every
  // file and the directory, renames it to step_NNNNNNNN (replacing an existing one), updates
  // `latest`, prunes to keep_last, and returns the final directory path. If write() or the commit
  // throws, the temp directory is removed and the exception propagates; `latest` is untouched. write() must produce a
  // state.json that parses (RuntimeError otherwise): without it the checkpoint would never be found.
  std::string save(int64_t step, const std::function<void(const std::string& dir)>& write);

  // The two halves of save() for multi-process writers: begin() removes stale .tmp_* directories and
  // creates the temp directory (named with `tag`, the pid when empty, so every rank can compute it
  // from a shared tag); each rank writes its files there; then one process calls commit().
  std::string begin(int64_t step, const std::string& tag = "");
  std::string commit(int64_t step, const std::string& tmp_dir);

  // The newest complete checkpoint: the one `latest` names if complete, else the complete step
  // directory with the highest step. Stale .tmp_* directories are ignored.
  std::optional<std::string> find_latest() const;

  // Complete step directories, oldest step first.
  std::vector<std::string> list_complete() const;

  const std::string& ckpt_dir() const { return ckpt_dir_; }
  static std::string step_dir_name(int64_t step);  // "step_00001000"

 private:
  std::string run_dir_, ckpt_dir_;
  int keep_last_;
};

// True if `dir` holds a state.json that parses as JSON.
bool is_complete_checkpoint(const std::string& dir);

// Resolves --resume: "auto" -> find_latest() in run_dir (nullopt if there is none); otherwise a
// checkpoint directory (or a run directory, meaning its latest checkpoint). InputError if the path
// is not a complete checkpoint.
std::optional<std::string> resolve_resume(const std::string& spec, const std::string& run_dir);

}  // namespace llmtrain
