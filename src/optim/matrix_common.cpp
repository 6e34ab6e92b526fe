// Shared machinery of the matrix optimizers (see optimizers.h): option readers, the momentum
// rule, the decoupled-decay update, and the diagonal-dominance diagnostics of the RMNP paper.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "llmtrain/error.h"
#include "cpu/linalg.h"
#include "optim/optimizers.h"

namespace llmtrain {

double get_unit_interval(JsonSection& s, const std::string& key, double def) {
  const double x = s.get_num(key, def, -1e300, 1e300);
  if (x < 0 || x >= 1) {
    char buf[96];
    std::snprintf(buf, sizeof buf, "must be in [0, 1), got %g", x);
    s.fail(key, buf);
  }
  return x;
}

void read_momentum_options(JsonSection& s, nlohmann::json& o, bool nesterov_default) {
  o["momentum"] = get_unit_interval(s, "momentum", 0.95);
  o["nesterov"] = s.get_bool("nesterov", nesterov_default);
  o["momentum_form"] = s.get_enum("momentum_form", "ema", {"ema", "sum"});
}

void read_ns_options(JsonSection& s, nlohmann::json& o, const std::string& default_set) {
  const std::string set = s.get_enum("coefficients", default_set, ns_coefficient_names());
  o["coefficients"] = set;
  o["ns_steps"] = s.get_int("ns_steps", ns_coefficients(set).default_steps, 1, 100);
  // A GEMM-layout choice of the device optimizers (NsEngine); the CPU computes the same products
  // unsplit, so it accepts and ignores it and a config runs unchanged on either backend.
  o["ns_symmetric"] = s.get_bool("ns_symmetric", false);
}

void read_scale_option(JsonSection& s, nlohmann::json& o) {
  o["scale"] = s.get_enum("scale", "max1", {"max1", "moonlight"});
}

void read_diagnostics_option(JsonSection& s, nlohmann::json& o) {
  o["diagnostics_side"] = s.get_enum("diagnostics_side", "short", {"short", "rows"});
}

float orth_scale(const std::string& scale, int64_t out, int64_t in) {
  if (scale == "moonlight") return 0.2f * (float)std::sqrt((double)std::max(out, in));
  return (float)std::max(1.0, std::sqrt((double)out / (double)in));
}

MomentumRule momentum_rule(const nlohmann::json& o) {
  MomentumRule r;
  r.beta = o.at("momentum").get<float>();
  r.nesterov = o.at("nesterov").get<bool>();
  r.sum_form = o.at("momentum_form").get<std::string>() == "sum";
  return r;
}

void require_matrix(const GroupConfig& cfg, const ParamInfo& info) {
  if (info.shape.size() == 2 && info.rows() >= 1 && info.cols() >= 1) return;
  std::string shape;
  for (int64_t d : info.shape) shape += (shape.empty() ? "" : ", ") + std::to_string(d);
  throw InputError("optimizer." + cfg.name + ": " + cfg.type + " updates 2-D matrices only, but " + info.name +
                   " (role " + role_name(info.role) + ") has shape [" + shape +
                   "]; route it to another group with \"roles\"");
}

void check_step_tensors(const std::string& group, const std::vector<const ParamInfo*>& infos,
                        const std::vector<ParamRef>& params) {
  if (params.size() != infos.size())
    throw RuntimeError("optimizer." + group + ": step() got " + std::to_string(params.size()) + " tensors, created with " +
                       std::to_string(infos.size()));
  for (size_t i = 0; i < params.size(); ++i)
    if (params[i].info->name != infos[i]->name || params[i].info->numel != infos[i]->numel)
      throw RuntimeError("optimizer." + group + ": step() tensor " + std::to_string(i) + " is " + params[i].info->name +
                         ", expected " + infos[i]->name);
}

MatrixOptimizer::MatrixOptimizer(const GroupConfig& cfg, const nlohmann::json& o, const std::vector<ParamRef>& params)
    : group_(cfg.name), wd_(cfg.weight_decay), rule_(momentum_rule(o)) {
  diag_rows_ = o.at("diagnostics_side").get<std::string>() == "rows";
  for (const auto& p : params) {
    require_matrix(cfg, *p.info);
    infos_.push_back(p.info);
    m_.emplace_back(p.info->numel, 0.0f);
  }
}

std::vector<StateTensor> MatrixOptimizer::state() {
  std::vector<StateTensor> s;
  for (size_t i = 0; i < infos_.size(); ++i) s.push_back({"m/" + infos_[i]->name, infos_[i]->shape, m_[i].data(), m_[i].size()});
  for (auto& t : extra_state()) s.push_back(t);
  return s;
}

float* MatrixOptimizer::scratch(size_t which, size_t n) {
  if (scratch_.size() <= which) scratch_.resize(which + 1);
  if (scratch_[which].size() < n) scratch_[which].resize(n);
  return scratch_[which].data();
}

void MatrixOptimizer::momentum_step(size_t i, const float* g, float* u) {
  momentum_update(rule_, m_[i].data(), g, u, (int64_t)m_[i].size());
}

void MatrixOptimizer::momentum_peek(size_t i, const float* g, float* u) const {
  const float* m = m_[i].data();
  const int64_t n = (int64_t)m_[i].size();
  for (int64_t j = 0; j < n; ++j) u[j] = rule_.u(m[j], g[j]);
}

void MatrixOptimizer::effective_gradient(size_t i, const float* g, float* out) const {
  std::memcpy(out, g, sizeof(float) * m_[i].size());
}

void MatrixOptimizer::apply_update(const ParamRef& p, const float* d, float lr, float scale) const {
  decay_update(p.w, d, (int64_t)p.info->numel, 1.0f - lr * wd_, lr * scale);
}

std::vector<double> dominance_ratios(const float* V, int64_t m, int64_t n, bool rows) {
  // Gram of the k chosen rows: V V^T (k = m), or V^T V (k = n) for a tall V on the short side.
  const bool tr = !rows && m > n;
  const int64_t k = tr ? n : m, len = tr ? m : n;
  if (k < 2) return {};
  std::vector<float> X((size_t)(k * len)), Xt((size_t)(len * k)), G((size_t)(k * k));
  if (tr)
    linalg::transpose(V, X.data(), m, n);
  else
    std::memcpy(X.data(), V, sizeof(float) * X.size());
  linalg::transpose(X.data(), Xt.data(), k, len);
  linalg::matmul(X.data(), Xt.data(), G.data(), k, len, k);
  double sum = 0, lo = INFINITY, hi = -INFINITY;
  for (int64_t i = 0; i < k; ++i) {
    double off = 0;
    for (int64_t j = 0; j < k; ++j)
      if (j != i) off += std::fabs((double)G[i * k + j]);
    off /= (double)(k - 1);
    const double r = std::fabs((double)G[i * k + i]) / std::max(off, 1e-300);
    sum += r;
    lo = std::min(lo, r);
    hi = std::max(hi, r);
  }
  return {sum / (double)k, lo, hi};
}

nlohmann::json dominance_diagnostics(const std::vector<const ParamInfo*>& infos, bool rows,
                                     const std::function<void(size_t, std::vector<float>&)>& fill_u) {
  nlohmann::json per = nlohmann::json::object();
  double a = 0, lo = 0, hi = 0;
  int count = 0;
  std::vector<float> u;
  for (size_t i = 0; i < infos.size(); ++i) {
    u.resize(infos[i]->numel);
    fill_u(i, u);
    auto r = dominance_ratios(u.data(), infos[i]->rows(), infos[i]->cols(), rows);
    if (r.empty()) continue;
    per[infos[i]->name] = {{"r_avg", r[0]}, {"r_min", r[1]}, {"r_max", r[2]}};
    a += r[0];
    lo += r[1];
    hi += r[2];
    ++count;
  }
  if (count == 0) return nullptr;
  return {{"r_avg", a / count}, {"r_min", lo / count}, {"r_max", hi / count}, {"matrices", per}};
}

nlohmann::json MatrixOptimizer::diagnostics() {
  if (last_.size() != infos_.size()) return nullptr;  // no step yet
  return dominance_diagnostics(infos_, diag_rows_, [&](size_t i, std::vector<float>& u) {
    float* ge = scratch(0, u.size());
    effective_gradient(i, last_[i].g, ge);
    momentum_peek(i, ge, u.data());
  });
}

void MatrixOptimizer::begin_step(const std::vector<ParamRef>& params) {
  check_step_tensors(group_, infos_, params);
  last_ = params;
}

}  // namespace llmtrain
