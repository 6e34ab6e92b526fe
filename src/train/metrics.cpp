// metrics.jsonl writer with resume truncation, and small console formatting helpers.
#include "llmtrain/metrics.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "llmtrain/checkpoint.h"
#include "llmtrain/error.h"
#include "llmtrain/json_float.h"
#include "util/util.h"

namespace llmtrain {

MetricsWriter::MetricsWriter(const std::string& run_dir, int64_t keep_through_step) {
  path_ = (std::filesystem::path(run_dir) / "metrics.jsonl").string();
  if (keep_through_step >= 0 && std::filesystem::exists(path_)) {
    std::ifstream in(path_);
    std::ostringstream kept;
    std::string line;
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      try {
        auto j = nlohmann::json::parse(line);
        if (j.contains("step") && j["step"].get<int64_t>() > keep_through_step) continue;
      } catch (const nlohmann::json::exception&) {
        continue;  // a line torn by a crash mid-write
      }
      kept << line << '\n';
    }
    write_file_atomic(path_, kept.str());
  } else if (keep_through_step < 0) {
    std::filesystem::remove(path_);
  }
  f_ = std::fopen(path_.c_str(), "a");
  if (!f_) throw RuntimeError(path_ + ": cannot open for writing");
}

MetricsWriter::~MetricsWriter() {
  if (f_) std::fclose(f_);
}

void MetricsWriter::write(const nlohmann::json& record) {
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
  if (std::fwrite(s.data(), 1, s.size(), f_) != s.size()) throw RuntimeError(path_ + ": write failed");
  std::fflush(f_);
}

double mfu(double flops_per_token, double tokens, double seconds, double peak_flops) {
  if (!(peak_flops > 0) || !(seconds > 0)) return 0.0;
  return flops_per_token * tokens / seconds / peak_flops;
}

}  // namespace llmtrain
