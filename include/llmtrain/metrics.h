// Metrics: one JSON object per line in <run_dir>/metrics.jsonl (machine-readable, what plots and
// reports read) plus the human progress line on the console.
#pragma once
#include <cstdint>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

namespace llmtrain {

class MetricsWriter {
 public:
  // Opens <run_dir>/metrics.jsonl for appending. With keep_through_step >= 0 (resume), lines of
  // later steps (written after the checkpoint we resume from) are dropped first, so the file is
  // exactly what an uninterrupted run would have written.
  MetricsWriter(const std::string& run_dir, int64_t keep_through_step);
  ~MetricsWriter();
  MetricsWriter(const MetricsWriter&) = delete;
  MetricsWriter& operator=(const MetricsWriter&) = delete;
  // One line, flushed. The values of record["lr"] (per group) are float32 learning rates and are
  // written as their shortest decimals (llmtrain/json_float.h).
  void write(const nlohmann::json& record);
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::FILE* f_ = nullptr;
};

// Model FLOPs utilisation: achieved FLOP/s (flops_per_token * tokens / seconds) over the device's
// nominal peak FLOP/s; 0 when the peak is unknown (<= 0). The one formula behind the training
// logs and `llmtrain bench`.
double mfu(double flops_per_token, double tokens, double seconds, double peak_flops);

}  // namespace llmtrain
