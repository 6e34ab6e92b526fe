// Metrics: one JSON object per line in <run_dir>/metrics.jsonl (machine-readable, what plots and
// reports read) plus the human progress line on the console. Every write is checked: a line that
// does not reach the file stops the run (RuntimeError naming the file) instead of leaving a gap.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace llmtrain {

class MetricsWriter {
 public:
  // Opens <run_dir>/metrics.jsonl for appending. A fresh run (resumed_at empty) starts an empty
  // file; a resumed one (resumed_at >= 0) first drops the lines of later steps (written after the
  // checkpoint it resumes from), so the file is exactly what an uninterrupted run would have
  // written. The file is replaced, never written through a symlink.
  MetricsWriter(const std::string& run_dir, std::optional<int64_t> resumed_at);
  ~MetricsWriter();
  MetricsWriter(const MetricsWriter&) = delete;
  MetricsWriter& operator=(const MetricsWriter&) = delete;
  // One line, handed to the kernel before returning; a line that cannot be written whole is cut
  // back out, so the file ends with a complete line, and the RuntimeError names file and step. The
  // values of record["lr"] (per group) are float32 learning rates, written as their shortest
  // decimals (llmtrain/json_float.h).
  void write(const nlohmann::json& record);
  void sync();                               // fsync: every line so far is on disk
  void close();                              // sync and close, checked
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t bytes_ = 0;  // size of the file up to its last complete line
};

// Model FLOPs utilisation: achieved FLOP/s (flops_per_token * tokens / seconds) over the device's
// nominal peak FLOP/s; 0 when the peak is unknown (<= 0). The one formula behind the training
// logs and `llmtrain bench`.
double mfu(double flops_per_token, double tokens, double seconds, double peak_flops);

}  // namespace llmtrain
