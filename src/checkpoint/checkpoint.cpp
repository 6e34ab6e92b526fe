// Checkpoint directories that survive crashes: temp dir -> fsync files and dir -> rename -> update
// `latest` (itself written atomically) -> prune. Readers trust nothing they cannot verify: `latest`
// is only followed when it names a complete step directory, and otherwise the newest complete one
// wins, so a crash between any two of these steps still resumes from a consistent checkpoint.
#include "llmtrain/checkpoint.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "llmtrain/error.h"
#include "util/util.h"

namespace fs = std::filesystem;

namespace llmtrain {
namespace {

// Parses "step_<digits>" into its step; -1 for any other name.
int64_t parse_step_name(const std::string& name) {
  const std::string prefix = "step_";
  if (name.size() <= prefix.size() || name.size() > prefix.size() + 18 || name.compare(0, prefix.size(), prefix) != 0)
    return -1;
  int64_t v = 0;
  for (size_t i = prefix.size(); i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9') return -1;
    v = v * 10 + (name[i] - '0');
  }
  return v;
}

// fsyncs every regular file and directory below `dir`, then `dir` itself.
void fsync_tree(const fs::path& dir) {
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.is_regular_file() || e.is_directory()) fsync_path(e.path().string());
  }
  fsync_path(dir.string());
}

}  // namespace

bool is_complete_checkpoint(const std::string& dir) {
  std::error_code ec;
  const fs::path state = fs::path(dir) / "state.json";
  if (!fs::is_directory(dir, ec) || !fs::is_regular_file(state, ec)) return false;
  std::ifstream in(state, std::ios::binary);
  if (!in) return false;
  std::stringstream ss;
  ss << in.rdbuf();
  return !nlohmann::json::parse(ss.str(), nullptr, /*allow_exceptions=*/false).is_discarded();
}

// ---------------------------------------------------------------- CheckpointManager

CheckpointManager::CheckpointManager(std::string run_dir, int keep_last)
    : run_dir_(std::move(run_dir)), ckpt_dir_((fs::path(run_dir_) / "ckpt").string()), keep_last_(keep_last) {}

std::string CheckpointManager::step_dir_name(int64_t step) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "step_%08lld", static_cast<long long>(step));
  return buf;
}

std::string CheckpointManager::begin(int64_t step, const std::string& tag) {
  if (step < 0) throw RuntimeError("checkpoint step must be >= 0, got " + std::to_string(step));
  std::error_code ec;
  fs::create_directories(ckpt_dir_, ec);
  if (ec) throw RuntimeError(ckpt_dir_ + ": cannot create checkpoint directory: " + ec.message());
  // Leftovers of crashed writes (including a replaced step dir parked under .tmp_old_).
  for (const auto& e : fs::directory_iterator(ckpt_dir_)) {
    const std::string name = e.path().filename().string();
    if (name.rfind(".tmp_", 0) == 0) fs::remove_all(e.path(), ec);
  }
  const std::string suffix = tag.empty() ? std::to_string(::getpid()) : tag;
  const fs::path tmp = fs::path(ckpt_dir_) / (".tmp_" + step_dir_name(step) + "_" + suffix);
  fs::create_directory(tmp, ec);
  if (ec) throw RuntimeError(tmp.string() + ": cannot create: " + ec.message());
  return tmp.string();
}

std::string CheckpointManager::commit(int64_t step, const std::string& tmp_dir) {
  const std::string name = step_dir_name(step);
  const fs::path final_dir = fs::path(ckpt_dir_) / name;
  if (!is_complete_checkpoint(tmp_dir))
    throw RuntimeError(tmp_dir + ": checkpoint is incomplete (state.json missing or does not parse); not committing");
  fsync_tree(tmp_dir);

  std::error_code ec;
  fs::path parked;
  if (fs::exists(final_dir, ec)) {
    // rename() cannot replace a non-empty directory: park the old one, swap, then delete it.
    parked = fs::path(ckpt_dir_) / (".tmp_old_" + name + "_" + std::to_string(::getpid()));
    fs::remove_all(parked, ec);
    fs::rename(final_dir, parked, ec);
    if (ec) throw RuntimeError(final_dir.string() + ": cannot move aside: " + ec.message());
  }
  fs::rename(tmp_dir, final_dir, ec);
  if (ec) throw RuntimeError(tmp_dir + ": rename to " + final_dir.string() + " failed: " + ec.message());
  fsync_path(ckpt_dir_);
  if (!parked.empty()) fs::remove_all(parked, ec);

  write_file_atomic((fs::path(ckpt_dir_) / "latest").string(), name + "\n");

  if (keep_last_ > 0) {
    std::vector<std::string> others;
    for (const auto& d : list_complete())
      if (fs::path(d).filename() != name) others.push_back(d);
    // `others` is oldest first; the newly saved one always stays, even if older than some of them.
    const size_t keep_others = static_cast<size_t>(keep_last_ - 1);
    if (others.size() > keep_others) {
      for (size_t i = 0; i < others.size() - keep_others; ++i) fs::remove_all(others[i], ec);
    }
  }
  return final_dir.string();
}

std::string CheckpointManager::save(int64_t step, const std::function<void(const std::string& dir)>& write) {
  const std::string tmp = begin(step);
  try {
    write(tmp);
    return commit(step, tmp);
  } catch (...) {
    std::error_code ec;
    fs::remove_all(tmp, ec);  // gone already if commit() got as far as the rename
    throw;
  }
}

std::vector<std::string> CheckpointManager::list_complete() const {
  std::vector<std::pair<int64_t, std::string>> found;
  std::error_code ec;
  if (!fs::is_directory(ckpt_dir_, ec)) return {};
  for (const auto& e : fs::directory_iterator(ckpt_dir_, ec)) {
    const int64_t step = parse_step_name(e.path().filename().string());
    if (step >= 0 && is_complete_checkpoint(e.path().string())) found.emplace_back(step, e.path().string());
  }
  std::sort(found.begin(), found.end());
  std::vector<std::string> out;
  for (auto& f : found) out.push_back(std::move(f.second));
  return out;
}

std::optional<std::string> CheckpointManager::find_latest() const {
  std::ifstream in(fs::path(ckpt_dir_) / "latest");
  std::string name;
  if (in && std::getline(in, name)) {
    while (!name.empty() && std::isspace(static_cast<unsigned char>(name.back()))) name.pop_back();
    // Only a bare step directory name is followed (never a path that leaves ckpt/).
    if (parse_step_name(name) >= 0) {
      const std::string dir = (fs::path(ckpt_dir_) / name).string();
      if (is_complete_checkpoint(dir)) return dir;
    }
  }
  auto all = list_complete();
  if (all.empty()) return std::nullopt;
  return all.back();
}

std::optional<std::string> resolve_resume(const std::string& spec, const std::string& run_dir) {
  if (spec.empty()) return std::nullopt;
  if (spec == "auto") return CheckpointManager(run_dir, 0).find_latest();
  if (is_complete_checkpoint(spec)) return spec;
  std::error_code ec;
  if (fs::is_directory(fs::path(spec) / "ckpt", ec)) {
    auto latest = CheckpointManager(spec, 0).find_latest();
    if (!latest) throw InputError("--resume: " + spec + ": run directory has no complete checkpoint");
    return latest;
  }
  if (!fs::exists(spec, ec)) throw InputError("--resume: " + spec + ": no such checkpoint directory");
  throw InputError("--resume: " + spec + ": not a complete checkpoint (state.json missing or does not parse)");
}

}  // namespace llmtrain
