// metrics.jsonl writer with resume truncation and checked writes, and small console formatting
// helpers.
#include "llmtrain/metrics.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "llmtrain/checkpoint.h"
#include "llmtrain/error.h"
#include "llmtrain/json_float.h"
#include "util/util.h"

namespace llmtrain {

MetricsWriter::MetricsWriter(const std::string& run_dir, std::optional<int64_t> resumed_at) {
  path_ = (std::filesystem::path(run_dir) / "metrics.jsonl").string();
  if (resumed_at && *resumed_at < 0)
    throw RuntimeError(path_ + ": cannot resume metrics at step " + std::to_string(*resumed_at));
  std::ostringstream kept;
  if (resumed_at) {
    std::ifstream in(path_);
    std::string line;
    while (in && std::getline(in, line)) {
      if (line.empty()) continue;
      try {
        auto j = nlohmann::json::parse(line);
        if (j.contains("step") && j["step"].get<int64_t>() > *resumed_at) continue;
      } catch (const nlohmann::json::exception&) {
        continue;  // a line torn by a crash mid-write
      }
      kept << line << '\n';
    }
  }
  // Replaced by rename (a symlink at the name is replaced, not followed), then appended to.
  write_file_atomic(path_, kept.str());
  fd_ = ::open(path_.c_str(), O_WRONLY | O_APPEND | O_NOFOLLOW | O_CLOEXEC);
  if (fd_ < 0) throw RuntimeError(path_ + ": cannot open for writing: " + std::strerror(errno));
  bytes_ = kept.str().size();
}

MetricsWriter::~MetricsWriter() {
  if (fd_ >= 0) ::close(fd_);
}

void MetricsWriter::write(const nlohmann::json& record) {
  if (fd_ < 0) throw RuntimeError(path_ + ": write after close");
  std::string s;
  if (record.contains("lr") && record["lr"].is_object()) {
    // The learning rates are the float32 values the optimizers use: shortest decimals, not noise.
    nlohmann::json r = record;
    for (auto& [group, lr] : r["lr"].items())
      if (lr.is_number_float()) lr = json_float((float)lr.get<double>());
    s = r.dump();
  } else {
    s = record.dump();
  }
  s += '\n';
  size_t done = 0;
  while (done < s.size()) {
    ssize_t w = ::write(fd_, s.data() + done, s.size() - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      const std::string e = w < 0 ? std::strerror(errno) : "no progress";
      // Cut the part of the line that made it, so the file still ends with a complete line.
      (void)!::ftruncate(fd_, (off_t)bytes_);
      throw RuntimeError(path_ + ": write failed at step " + record.value("step", nlohmann::json()).dump() + ": " + e);
    }
    done += (size_t)w;
  }
  bytes_ += s.size();
}

void MetricsWriter::sync() {
  if (fd_ >= 0 && ::fsync(fd_) != 0 && errno != EINVAL)
    throw RuntimeError(path_ + ": fsync failed: " + std::strerror(errno));
}

void MetricsWriter::close() {
  if (fd_ < 0) return;
  sync();
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) throw RuntimeError(path_ + ": close failed: " + std::strerror(errno));
}

double mfu(double flops_per_token, double tokens, double seconds, double peak_flops) {
  if (!(peak_flops > 0) || !(seconds > 0)) return 0.0;
  return flops_per_token * tokens / seconds / peak_flops;
}

}  // namespace llmtrain
