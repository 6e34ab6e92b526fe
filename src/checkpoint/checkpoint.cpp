// Checkpoint directories that survive crashes: temp dir -> fsync files and dir -> rename -> remove
// higher steps -> update `latest` (itself written atomically) -> prune. Readers trust nothing they
// cannot verify: the newest checkpoint is found by scanning step directories, each checked against
// the size and CRC-32C its state.json records for every file, so a crash between any two of these
// steps, a truncated file or a flipped bit still resumes from a consistent checkpoint.
#include "llmtrain/checkpoint.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
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

// Reflected CRC-32C tables (polynomial 0x82F63B78) for the byte-at-a-time software path.
struct Crc32cTable {
  uint32_t t[256];
  Crc32cTable() {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
      t[i] = c;
    }
  }
};

uint32_t crc32c_sw(uint32_t c, const unsigned char* p, size_t n) {
  static const Crc32cTable table;
  while (n--) c = table.t[(c ^ *p++) & 0xffu] ^ (c >> 8);
  return c;
}

#if defined(__x86_64__)
// The crc32 instruction computes exactly CRC-32C, 8 bytes per instruction.
__attribute__((target("sse4.2"))) uint32_t crc32c_hw(uint32_t c, const unsigned char* p, size_t n) {
  uint64_t c64 = c;
  for (; n >= 8; n -= 8, p += 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    c64 = __builtin_ia32_crc32di(c64, v);
  }
  c = (uint32_t)c64;
  for (; n; --n) c = __builtin_ia32_crc32qi(c, *p++);
  return c;
}
bool have_crc32_instruction() {
  static const bool yes = __builtin_cpu_supports("sse4.2");
  return yes;
}
#endif

std::string hex32(uint32_t v) {
  char b[9];
  std::snprintf(b, sizeof b, "%08x", v);
  return b;
}

// The manifest entry's fields, or an explanation of what is malformed.
std::string parse_file_sum(const nlohmann::json& e, FileSum* out) {
  if (!e.is_object() || !e.contains("bytes") || !e["bytes"].is_number_unsigned() || !e.contains("crc32c") ||
      !e["crc32c"].is_string())
    return "expected {\"bytes\": <size>, \"crc32c\": \"<8 hex digits>\"}";
  const std::string h = e["crc32c"].get<std::string>();
  if (h.size() != 8 || h.find_first_not_of("0123456789abcdef") != std::string::npos)
    return "crc32c: expected 8 lowercase hex digits, got \"" + h + "\"";
  out->bytes = e["bytes"].get<uint64_t>();
  out->crc32c = (uint32_t)std::stoul(h, nullptr, 16);
  return "";
}

}  // namespace

uint32_t crc32c(uint32_t crc, const void* data, size_t n) {
  const unsigned char* p = static_cast<const unsigned char*>(data);
#if defined(__x86_64__)
  if (have_crc32_instruction()) return ~crc32c_hw(~crc, p, n);
#endif
  return ~crc32c_sw(~crc, p, n);
}

FileSum checksum_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw RuntimeError(path + ": cannot open to checksum: " + std::strerror(errno));
  std::vector<unsigned char> buf(4u << 20);
  FileSum s;
  for (;;) {
    ssize_t got = ::read(fd, buf.data(), buf.size());
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      std::string e = std::strerror(errno);
      ::close(fd);
      throw RuntimeError(path + ": read failed while checksumming: " + e);
    }
    if (got == 0) break;
    s.crc32c = crc32c(s.crc32c, buf.data(), (size_t)got);
    s.bytes += (uint64_t)got;
  }
  ::close(fd);
  return s;
}

nlohmann::json file_sum_json(const FileSum& s) { return {{"bytes", s.bytes}, {"crc32c", hex32(s.crc32c)}}; }

std::string checkpoint_problem(const std::string& dir, bool checksums) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return dir + ": not a directory";
  const std::string state = (fs::path(dir) / "state.json").string();
  if (!fs::is_regular_file(state, ec)) return state + ": missing";
  std::ifstream in(state, std::ios::binary);
  if (!in) return state + ": cannot open";
  std::stringstream ss;
  ss << in.rdbuf();
  const nlohmann::json st = nlohmann::json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  if (st.is_discarded()) return state + ": not valid JSON (torn or damaged)";
  if (!st.is_object() || !st.contains("files")) return "";  // no manifest: nothing more to check
  const nlohmann::json& files = st["files"];
  if (!files.is_object()) return state + ": files: expected an object";
  for (auto it = files.begin(); it != files.end(); ++it) {
    const std::string& name = it.key();
    // Only plain names inside the checkpoint directory.
    if (name.empty() || name[0] == '.' || name.find('/') != std::string::npos)
      return state + ": files: \"" + name + "\" is not a file name in the checkpoint directory";
    FileSum want;
    const std::string bad = parse_file_sum(it.value(), &want);
    if (!bad.empty()) return state + ": files." + name + ": " + bad;
    const std::string path = (fs::path(dir) / name).string();
    struct stat sb;
    if (::lstat(path.c_str(), &sb) != 0) return path + ": missing (listed in state.json)";
    if (!S_ISREG(sb.st_mode)) return path + ": not a regular file";
    if ((uint64_t)sb.st_size != want.bytes)
      return path + ": " + std::to_string(sb.st_size) + " bytes, state.json records " + std::to_string(want.bytes) +
             " (truncated or replaced)";
    if (checksums) {
      const FileSum got = checksum_file(path);
      if (got.crc32c != want.crc32c)
        return path + ": checksum mismatch (CRC-32C " + hex32(got.crc32c) + ", state.json records " +
               hex32(want.crc32c) + "): the file is damaged";
    }
  }
  return "";
}

bool is_complete_checkpoint(const std::string& dir) { return checkpoint_problem(dir, false).empty(); }

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
  // Leftovers of crashed writes (including a replaced step dir parked under .tmp_old_, and the temp
  // file of a `latest` update killed before its rename).
  for (const auto& e : fs::directory_iterator(ckpt_dir_)) {
    const std::string name = e.path().filename().string();
    if (name.rfind(".tmp_", 0) == 0 || name.rfind(".latest.tmp.", 0) == 0) fs::remove_all(e.path(), ec);
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
  // Higher steps belong to the continuation this run abandoned by resuming from an older
  // checkpoint (its metrics lines are gone already): the step just written is the newest.
  for (const auto& e : fs::directory_iterator(ckpt_dir_, ec)) {
    if (parse_step_name(e.path().filename().string()) > step) fs::remove_all(e.path(), ec);
  }

  write_file_atomic((fs::path(ckpt_dir_) / "latest").string(), name + "\n");

  if (keep_last_ > 0) {
    const std::vector<std::string> all = list_complete();  // oldest first, ending with this one
    if (all.size() > static_cast<size_t>(keep_last_)) {
      for (size_t i = 0; i < all.size() - keep_last_; ++i) fs::remove_all(all[i], ec);
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

std::optional<std::string> CheckpointManager::find_latest(bool verify, std::vector<std::string>* skipped) const {
  std::vector<std::pair<int64_t, std::string>> found;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(ckpt_dir_, ec)) {
    const int64_t step = parse_step_name(e.path().filename().string());
    if (step >= 0) found.emplace_back(step, e.path().string());
  }
  std::sort(found.rbegin(), found.rend());  // newest first
  for (const auto& [step, dir] : found) {
    const std::string problem = checkpoint_problem(dir, verify);
    if (problem.empty()) return dir;
    if (skipped) skipped->push_back(problem);
  }
  return std::nullopt;
}

bool CheckpointManager::has_checkpoints() const {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(ckpt_dir_, ec))
    if (parse_step_name(e.path().filename().string()) >= 0) return true;
  return false;
}

std::optional<std::string> resolve_resume(const std::string& spec, const std::string& run_dir,
                                          std::vector<std::string>* skipped) {
  if (spec.empty()) return std::nullopt;
  std::vector<std::string> passed;
  auto newest = [&](const std::string& dir, bool required) -> std::optional<std::string> {
    CheckpointManager m(dir, 0);
    auto latest = m.find_latest(/*verify=*/true, &passed);
    if (skipped) skipped->insert(skipped->end(), passed.begin(), passed.end());
    if (latest) return latest;
    if (!passed.empty())
      throw InputError("--resume: " + dir + ": no usable checkpoint; the newest: " + passed.front());
    if (required) throw InputError("--resume: " + spec + ": run directory has no complete checkpoint");
    return std::nullopt;
  };
  if (spec == "auto") return newest(run_dir, false);
  std::error_code ec;
  if (fs::is_regular_file(fs::path(spec) / "state.json", ec) || !fs::is_directory(fs::path(spec) / "ckpt", ec)) {
    if (!fs::exists(spec, ec)) throw InputError("--resume: " + spec + ": no such checkpoint directory");
    const std::string problem = checkpoint_problem(spec, /*checksums=*/true);
    if (!problem.empty()) throw InputError("--resume: " + problem);
    return spec;
  }
  return newest(spec, true);
}

}  // namespace llmtrain
