// Atomic checkpoint directories. A checkpoint is `<run_dir>/ckpt/step_NNNNNNNN/` holding whatever
// the trainer writes (model.safetensors, optimizer_rank<r>.safetensors, state.json). It is filled in
// a temp directory, every file and the directory are fsynced, the directory is renamed into place,
// and then `<run_dir>/ckpt/latest` (the name of the newest step dir, for people and scripts) is
// replaced. Readers never trust `latest`: the newest checkpoint is the complete step directory with
// the highest step, which is why a commit removes the step directories above the one it writes (the
// abandoned continuation of a run resumed from an older checkpoint). "Complete" means state.json
// exists and parses, and every file its "files" manifest lists is there with the recorded size;
// "verified" adds the recorded CRC-32C of each file. write() may create its files in any order: the
// directory only becomes visible under its final name after write() returns.
#pragma once
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace llmtrain {

class CheckpointManager {
 public:
  // keep_last <= 0 keeps every checkpoint.
  CheckpointManager(std::string run_dir, int keep_last);

  // Creates <run_dir>/ckpt/.tmp_step_NNNNNNNN_<pid>/, calls write(tmpdir) to fill it, fsyncs every
  // file and the directory, renames it to step_NNNNNNNN (replacing an existing one), removes the
  // step directories of higher steps, updates `latest`, prunes to keep_last (oldest first), and
  // returns the final directory path. If write() or the commit throws, the temp directory is
  // removed and the exception propagates; `latest` is untouched. write() must produce a state.json
  // that parses (RuntimeError otherwise): without it the checkpoint would never be found.
  std::string save(int64_t step, const std::function<void(const std::string& dir)>& write);

  // The two halves of save() for multi-process writers: begin() removes leftovers of crashed
  // writes (.tmp_* directories, .latest.tmp.* files) and creates the temp directory (named with
  // `tag`, the pid when empty, so every rank can compute it from a shared tag); each rank writes
  // its files there; then one process calls commit().
  std::string begin(int64_t step, const std::string& tag = "");
  std::string commit(int64_t step, const std::string& tmp_dir);

  // The newest usable checkpoint: the complete step directory with the highest step (verified,
  // checksums included, with `verify`). Each newer step directory passed over adds its problem
  // (checkpoint_problem) to *skipped. Stale .tmp_* directories are never candidates.
  std::optional<std::string> find_latest(bool verify = false, std::vector<std::string>* skipped = nullptr) const;

  // Whether any step directory exists, complete or not (a fresh run must not mix with it).
  bool has_checkpoints() const;

  // Complete step directories, oldest step first.
  std::vector<std::string> list_complete() const;

  const std::string& ckpt_dir() const { return ckpt_dir_; }
  static std::string step_dir_name(int64_t step);  // "step_00001000"

 private:
  std::string run_dir_, ckpt_dir_;
  int keep_last_;
};

// ---- integrity ----
// CRC-32C (Castagnoli) of n bytes, continuing from `crc` (0 to start): crc32c(crc32c(0, a), b) is
// the CRC of a followed by b. SSE4.2's crc32 instruction where the CPU has it, tables otherwise.
uint32_t crc32c(uint32_t crc, const void* data, size_t n);

struct FileSum {
  uint64_t bytes = 0;
  uint32_t crc32c = 0;
};
// Size and CRC-32C of a file's contents (RuntimeError naming the file if it cannot be read).
FileSum checksum_file(const std::string& path);
// {"bytes": n, "crc32c": "<8 hex digits>"}: one entry of a state.json "files" manifest.
nlohmann::json file_sum_json(const FileSum& s);

// What is wrong with checkpoint `dir`, as one line naming the file ("" if nothing): state.json
// missing or not JSON; a file listed in its "files" manifest ({"<name>": file_sum_json}) missing,
// not a regular file or of another size; with `checksums`, a file whose CRC-32C differs.
std::string checkpoint_problem(const std::string& dir, bool checksums);

// checkpoint_problem(dir, false) is empty.
bool is_complete_checkpoint(const std::string& dir);

// Resolves --resume: "auto" -> find_latest(verify) in run_dir (nullopt if there is no step
// directory; InputError if there are some but none is usable); otherwise a checkpoint directory (or
// a run directory, meaning its newest verified checkpoint). InputError naming the file if the
// checkpoint asked for is incomplete or damaged. Newer checkpoints passed over go to *skipped.
std::optional<std::string> resolve_resume(const std::string& spec, const std::string& run_dir,
                                          std::vector<std::string>* skipped = nullptr);

}  // namespace llmtrain
