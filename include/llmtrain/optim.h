// The optimizer layer: parameter groups routed by role, learning-rate schedules, and the
// Optimizer interface every method (AdamW, Muon, RMNP, low-rank Muon, PolarGrad, Newton-Muon)
// implements. An optimizer owns its state (fp32, one StateTensor per buffer, checkpointed by name)
// and updates the fp32 weights of its group in place from their gradients.
//
// Config shape (section "optimizer"): one object per group, the key is the group name:
//   "optimizer": {"matrix": {"type": "rmnp", "lr": 0.004, "weight_decay": 0.1, ...},
//                 "adamw":  {"type": "adamw", "lr": 0.001, "beta1": 0.9, ...}}
// Each group may carry "roles" (which ParamRoles it takes) and "schedule" (overrides the top-level
// schedule). Defaults: a group named "matrix" takes hidden_matrix; a group named "adamw" takes every
// role no other group claims. Every parameter must land in exactly one group.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "llmtrain/params.h"

namespace llmtrain {

// One model tensor as an optimizer sees it: its layout entry, weights and gradients (fp32, same
// numel, row-major [out, in] for matrices).
struct ParamRef {
  const ParamInfo* info = nullptr;
  float* w = nullptr;
  float* g = nullptr;
  // ZeRO-1 (src/train/zero.h): when `info` describes a slice of a model tensor (some of its rows,
  // or a flat range), the whole tensor; null otherwise. Shape-dependent scales use it.
  const ParamInfo* whole = nullptr;
  // Device optimizers (make_optimizer with on_device): w and g are device pointers, and w_bf16,
  // when not null, is the device bf16 working copy of w, rewritten (round to nearest) by the same
  // pass that updates w.
  void* w_bf16 = nullptr;
};

// One buffer of optimizer state, saved to / restored from the checkpoint under "<group>/<name>".
// Names are stable across runs (e.g. "m/transformer.h.0.attn.c_attn.weight").
struct StateTensor {
  std::string name;
  std::vector<int64_t> shape;
  float* data = nullptr;
  size_t numel = 0;
  bool on_device = false;  // data is a device pointer (copy with copy_state_to_host / _from_host)
};

// Copies the numel floats of a state tensor to / from host memory, wherever the tensor lives. For
// device state the device is synchronised first (pending updates land before the copy) and after
// an upload (the next update sees the loaded values). InputError on a build without CUDA.
void copy_state_to_host(const StateTensor& s, float* host);
void copy_state_from_host(const StateTensor& s, const float* host);

// ---- learning-rate schedules ----
// lr(step) = base_lr * factor(step), step counted from 0 (the first update uses step 0).
//   cosine:   linear warmup over warmup steps to 1, then cosine to min_lr_frac at the last step.
//   constant: warmup then 1.
//   linear:   warmup then linear to min_lr_frac.
//   wsd:      warmup, stable at 1, then linear decay to min_lr_frac over the last decay_frac.
// Warmup: warmup_steps if >= 0, else round(warmup_frac * total_steps).
struct Schedule {
  std::string type = "cosine";
  double warmup_frac = 0.1;
  int64_t warmup_steps = -1;
  double min_lr_frac = 0.1;
  double decay_frac = 0.2;  // wsd only
};

// Parses a schedule object ({} gives the defaults). `key` is its dotted name for messages
// ("schedule", "optimizer.matrix.schedule"); errors are InputError naming file and key.
Schedule parse_schedule(const nlohmann::json& j, const std::string& file, const std::string& key);
// Like parse_schedule, but unset fields fall back to `base` (for per-group overrides).
Schedule parse_schedule_over(const nlohmann::json& j, const Schedule& base, const std::string& file,
                             const std::string& key);
float schedule_lr(const Schedule& s, float base_lr, int64_t step, int64_t total_steps);

// ---- groups ----
struct GroupConfig {
  std::string name;  // the key in the optimizer section
  std::string type;  // adamw | muon | rmnp | lowrank_muon | polargrad | newton_muon
  float lr = 0;
  float weight_decay = 0;
  std::vector<ParamRole> roles;  // empty for the catch-all group
  bool catch_all = false;        // takes every role nobody else claims
  nlohmann::json options = nlohmann::json::object();  // validated type-specific options
  Schedule schedule;
};

// Validates the whole optimizer section (every key, type and range; errors name the key, e.g.
// "cfg.json: optimizer.matrix.momentum: must be in [0, 1), got 1.2"). An empty section gives one
// AdamW group "adamw" with the defaults. Returns groups in a deterministic order.
std::vector<GroupConfig> parse_optimizer_config(const nlohmann::json& optimizer, const Schedule& default_schedule,
                                                const std::string& file);

// Splits `all` into one list per group (same order as `groups`), keeping model order inside each.
// RuntimeError if a parameter matches no group or two groups.
std::vector<std::vector<ParamRef>> assign_groups(const std::vector<GroupConfig>& groups,
                                                 const std::vector<ParamRef>& all);

// The input activations [rows, info.cols()] that multiplied matrix `info` in the last forward, as
// host memory valid until the next forward; nullptr when there are none (not a matrix). The trainer
// answers from Backend::matrix_input().
using InputSource = std::function<const float*(const ParamInfo& info, int64_t* rows)>;

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  virtual std::string type() const = 0;
  // One update of every tensor in `params` (the same tensors, in the same order, as at creation)
  // with learning rate `lr`; `step` counts updates from 1 (bias correction).
  virtual void step(const std::vector<ParamRef>& params, float lr, int64_t step) = 0;
  // All state buffers (stable names and shapes; empty for stateless methods).
  virtual std::vector<StateTensor> state() = 0;
  // Small scalar state (counters, RNG) as JSON, saved in state.json; restored before the next step.
  virtual nlohmann::json scalar_state() const { return nlohmann::json::object(); }
  virtual void load_scalar_state(const nlohmann::json& j) {}
  // Called right before step(params, lr, step), after the step's last forward and backward: the
  // place for statistics of the forward (Newton-Muon's input second moments). `inputs` fetches the
  // input activations of a matrix. The default feeds observe_inputs() with every matrix of `params`
  // on the steps wants_inputs() names.
  virtual void before_step(const std::vector<ParamRef>& params, const InputSource& inputs, int64_t step) {
    if (!wants_inputs(step)) return;
    for (const auto& r : params) {
      int64_t rows = 0;
      const float* z = inputs(*r.info, &rows);
      if (z) observe_inputs(*r.info, z, rows, r.info->cols());
    }
  }
  // Newton-Muon: whether update `step` needs the input activations of each matrix, and one
  // matrix's activations z [rows, cols] (what the default before_step() hands over).
  virtual bool wants_inputs(int64_t step) const { return false; }
  virtual void observe_inputs(const ParamInfo& info, const float* z, int64_t rows, int64_t cols) {}
  // Diagnostics (diagonal-dominance ratios) computed from the current momentum; null if none.
  virtual nlohmann::json diagnostics() { return nullptr; }
  // Device optimizers: whether state and ParamRefs are device memory, and the CUDA stream
  // (a cudaStream_t; default the legacy stream) every update is enqueued on. step() does not
  // synchronise; a caller reading weights on another stream orders it after this one.
  virtual bool on_device() const { return false; }
  virtual void set_stream(void* cuda_stream) {}
};

// `seed` drives any randomness (low-rank sketches) deterministically.
std::unique_ptr<Optimizer> make_optimizer(const GroupConfig& cfg, const std::vector<ParamRef>& params, uint64_t seed);
// on_device = true: the CUDA twin of the same optimizer (same options, same state names and shapes,
// so checkpoints are interchangeable); params hold device fp32 pointers and state lives on the
// current device. InputError "this build has no CUDA" on a CPU-only build.
std::unique_ptr<Optimizer> make_optimizer(const GroupConfig& cfg, const std::vector<ParamRef>& params, uint64_t seed,
                                          bool on_device);

}  // namespace llmtrain
