// Internal to src/optim: the per-type option readers (one per optimizer, each reading and
// range-checking its own keys from a group's config section and writing them, defaults filled, into
// a JSON object) and the per-type factories behind make_optimizer. The shared machinery of the
// matrix methods (momentum, Newton-Schulz options, update rule, diagnostics) is here too.
#pragma once
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "config/json_section.h"
#include "llmtrain/optim.h"
#include "cpu/optim.h"

namespace llmtrain {

// Types and whether each is a matrix method (needs 2-D tensors).
const std::vector<std::string>& optimizer_types();
bool is_matrix_type(const std::string& type);
// Default base learning rate and weight decay of a type (used when the config gives none).
double default_lr(const std::string& type);
double default_weight_decay(const std::string& type);

// AdamW's decoupled weight decay applies to matrices, embeddings and the LM head, never to
// norm gains or biases (CPU and device AdamW share this rule).
inline bool adamw_decays(ParamRole r) {
  return r == ParamRole::hidden_matrix || r == ParamRole::embedding || r == ParamRole::lm_head;
}

// Reads every type-specific option of `type` from `s` into `out` (defaults filled in).
void read_type_options(const std::string& type, JsonSection& s, nlohmann::json& out);

// The options of cfg re-read through read_type_options (defaults filled, unknown keys rejected).
nlohmann::json checked_type_options(const GroupConfig& cfg);

// The CUDA twins (src/optim/matrix_common_cuda.cpp; defined in the CUDA plugin only): same options and
// state names as the CPU optimizer of cfg.type, ParamRefs and state in device memory.
std::unique_ptr<Optimizer> make_device_optimizer(const GroupConfig& cfg, const nlohmann::json& o,
                                                 const std::vector<ParamRef>& p, uint64_t seed);
// Synchronises the device, then copies `bytes` between host and device (CUDA builds only).
void device_state_copy(void* dst, const void* src, size_t bytes, bool to_host);

std::unique_ptr<Optimizer> make_adamw(const GroupConfig& cfg, const nlohmann::json& o, const std::vector<ParamRef>& p);
std::unique_ptr<Optimizer> make_muon(const GroupConfig& cfg, const nlohmann::json& o, const std::vector<ParamRef>& p);
std::unique_ptr<Optimizer> make_rmnp(const GroupConfig& cfg, const nlohmann::json& o, const std::vector<ParamRef>& p);
std::unique_ptr<Optimizer> make_lowrank_muon(const GroupConfig& cfg, const nlohmann::json& o,
                                             const std::vector<ParamRef>& p, uint64_t seed);
std::unique_ptr<Optimizer> make_polargrad(const GroupConfig& cfg, const nlohmann::json& o,
                                          const std::vector<ParamRef>& p);
std::unique_ptr<Optimizer> make_newton_muon(const GroupConfig& cfg, const nlohmann::json& o,
                                            const std::vector<ParamRef>& p);

// ---- option readers shared by the matrix methods ----
// A number in [0, 1) (momenta, betas): "must be in [0, 1), got 1.2".
double get_unit_interval(JsonSection& s, const std::string& key, double def);
// momentum (0.95), nesterov, momentum_form ("ema" | "sum").
void read_momentum_options(JsonSection& s, nlohmann::json& o, bool nesterov_default);
// coefficients (a Newton-Schulz set), ns_steps (default: the set's own length).
void read_ns_options(JsonSection& s, nlohmann::json& o, const std::string& default_set);
// scale ("max1" | "moonlight").
void read_scale_option(JsonSection& s, nlohmann::json& o);
// diagnostics_side ("short" | "rows").
void read_diagnostics_option(JsonSection& s, nlohmann::json& o);

// The update scale of an orthogonalized [out, in] block: "max1" max(1, sqrt(out/in)) (Keller
// Jordan's Muon), "moonlight" 0.2 sqrt(max(out, in)) (matches AdamW's update RMS, Moonlight).
float orth_scale(const std::string& scale, int64_t out, int64_t in);

// ---- shared by the CPU matrix methods (MatrixOptimizer) and their device twins ----
// The momentum rule of the options (momentum, nesterov, momentum_form); see cpu/optim.h.
MomentumRule momentum_rule(const nlohmann::json& o);
// InputError unless `info` is a 2-D matrix (names the group, type, tensor, role and shape).
void require_matrix(const GroupConfig& cfg, const ParamInfo& info);
// RuntimeError unless step() got the tensors of creation (same names, sizes and order).
void check_step_tensors(const std::string& group, const std::vector<const ParamInfo*>& infos,
                        const std::vector<ParamRef>& params);
// The diagnostics object of a matrix group: dominance_ratios of each tensor's U (rows: the
// "diagnostics_side"), per matrix and averaged; null when no tensor has two rows. fill_u(i, buf)
// writes U of tensor i (numel floats) into buf.
nlohmann::json dominance_diagnostics(const std::vector<const ParamInfo*>& infos, bool rows,
                                     const std::function<void(size_t, std::vector<float>&)>& fill_u);

// Base of every matrix method: one momentum buffer per tensor ("m/<name>"), the momentum rule,
// the decoupled-decay update and the diagonal-dominance diagnostics.
//   ema: M = b M + (1 - b) G,  U = nesterov ? (1 - b) G + b M : M
//   sum: M = b M + G,          U = nesterov ? G + b M : M
class MatrixOptimizer : public Optimizer {
 public:
  MatrixOptimizer(const GroupConfig& cfg, const nlohmann::json& o, const std::vector<ParamRef>& params);
  std::vector<StateTensor> state() override;
  nlohmann::json diagnostics() override;

 protected:
  // Updates M_i from g and writes U (numel of tensor i floats).
  void momentum_step(size_t i, const float* g, float* u);
  // U from the current M_i and the gradient g of the step that produced it (no update).
  void momentum_peek(size_t i, const float* g, float* u) const;
  // The gradient the momentum saw at the last step (Newton-Muon preconditions it).
  virtual void effective_gradient(size_t i, const float* g, float* out) const;
  virtual std::vector<StateTensor> extra_state() { return {}; }
  // W = W (1 - lr wd) - lr scale D.
  void apply_update(const ParamRef& p, const float* d, float lr, float scale) const;
  // Start of every step(): checks that `params` are the tensors of creation (same names and
  // sizes, same order; RuntimeError otherwise) and remembers them (diagnostics recompute U).
  void begin_step(const std::vector<ParamRef>& params);
  float* scratch(size_t which, size_t n);

  std::string group_;
  float wd_ = 0;
  MomentumRule rule_;
  bool diag_rows_ = false;
  std::vector<const ParamInfo*> infos_;
  std::vector<std::vector<float>> m_;
  std::vector<ParamRef> last_;
  std::vector<std::vector<float>> scratch_;
};

// Diagonal dominance of the Gram matrix V V^T of one [m, n] matrix (the RMNP paper's monitor):
// r_i = |(VV^T)_ii| / ((1/(k-1)) sum_{j != i} |(VV^T)_ij|) over the k rows of V (rows = true) or
// of its short side (rows = false: V^T when V is tall); returns {r_avg, r_min, r_max}, or an
// empty array when k < 2.
std::vector<double> dominance_ratios(const float* V, int64_t m, int64_t n, bool rows);

}  // namespace llmtrain
