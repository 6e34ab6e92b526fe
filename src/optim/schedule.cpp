// Learning-rate schedules: parsing of the "schedule" objects (top level and per group) and the
// factor lr(step)/base_lr. Steps count from 0; warmup is linear and reaches the peak on its last
// step; every decaying schedule reaches min_lr_frac exactly on the run's last step.
#include <algorithm>
#include <cmath>

#include "config/json_section.h"
#include "llmtrain/error.h"
#include "llmtrain/optim.h"

namespace llmtrain {
namespace {

const std::vector<std::string> kScheduleTypes = {"cosine", "constant", "linear", "wsd"};

Schedule read_schedule(const nlohmann::json& j, const Schedule& base, const std::string& file, const std::string& key) {
  JsonSection s(j, key, file);
  Schedule r;
  r.type = s.get_enum("type", base.type, kScheduleTypes);
  r.warmup_frac = s.get_num("warmup_frac", base.warmup_frac, 0.0, 1.0);
  r.warmup_steps = s.get_int("warmup_steps", base.warmup_steps, -1, (int64_t)1 << 50);
  r.min_lr_frac = s.get_num("min_lr_frac", base.min_lr_frac, 0.0, 1.0);
  r.decay_frac = s.get_num("decay_frac", base.decay_frac, 0.0, 1.0);
  s.finish();
  return r;
}

}  // namespace

Schedule parse_schedule(const nlohmann::json& j, const std::string& file, const std::string& key) {
  if (j.is_null()) return Schedule{};
  return read_schedule(j, Schedule{}, file, key);
}

Schedule parse_schedule_over(const nlohmann::json& j, const Schedule& base, const std::string& file,
                             const std::string& key) {
  if (j.is_null()) return base;
  return read_schedule(j, base, file, key);
}

float schedule_lr(const Schedule& s, float base_lr, int64_t step, int64_t total_steps) {
  if (total_steps <= 0) return base_lr;
  step = std::clamp<int64_t>(step, 0, total_steps - 1);
  const int64_t last = total_steps - 1;
  int64_t warm = s.warmup_steps >= 0 ? s.warmup_steps : (int64_t)std::llround(s.warmup_frac * (double)total_steps);
  warm = std::min(warm, total_steps);
  if (step < warm) return (float)(base_lr * (double)(step + 1) / (double)warm);
  const double lo = s.min_lr_frac;
  double f = 1.0;
  if (s.type == "constant") {
    f = 1.0;
  } else if (s.type == "cosine" || s.type == "linear") {
    // progress 0 on the first step after warmup, 1 on the last step
    const double span = (double)std::max<int64_t>(1, last - warm);
    const double p = std::clamp((double)(step - warm) / span, 0.0, 1.0);
    f = s.type == "cosine" ? lo + (1.0 - lo) * 0.5 * (1.0 + std::cos(M_PI * p)) : 1.0 - (1.0 - lo) * p;
  } else if (s.type == "wsd") {
    // stable at 1, then the last `decay` steps fall linearly, the last one landing on min_lr_frac
    const int64_t decay = std::max<int64_t>(1, (int64_t)std::llround(s.decay_frac * (double)total_steps));
    const int64_t start = total_steps - decay;
    if (step >= start && s.decay_frac > 0) {
      const double p = (double)(step - start + 1) / (double)decay;
      f = 1.0 - (1.0 - lo) * p;
    }
  } else {
    throw RuntimeError("unknown schedule type '" + s.type + "'");
  }
  return (float)(base_lr * f);
}

}  // namespace llmtrain
