// The backend interface: one model's forward, backward and gradient bookkeeping on one device.
// The training loop only talks to this interface, so it never branches on cpu vs cuda. Master
// parameters and gradients are fp32 in the model's ParamLayout; on the CPU they are host memory,
// on CUDA device memory (on_device() says which), with explicit host copies for checkpoints.
// BackendOptions carry the run settings that change how a backend computes or stores, never what
// it computes: activation recomputation and the rounding of the CUDA bf16 working weights.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "llmtrain/model.h"

namespace llmtrain {

enum class Bf16Rounding { nearest, stochastic };

struct BackendOptions {
  // run.recompute: 0 keeps every activation for backward; 1 drops the MLP activation (GELU /
  // SwiGLU output) of every layer and recomputes it in backward; 2 also drops the normalised
  // ln1/ln2 outputs. The dropped tensors share one per-layer scratch. Same results bit for bit:
  // backward re-runs the forward's own kernels on the same saved inputs.
  int recompute = 0;
  // run.bf16_rounding: how the CUDA backend refreshes its bf16 working weights from the fp32
  // masters (the CPU backend has no bf16 copy and ignores it).
  Bf16Rounding bf16_rounding = Bf16Rounding::nearest;
  // Keys stochastic rounding together with the step (begin_step): run.seed.
  uint64_t seed = 0;
};

// BackendOptions from a run config's run section (run.recompute, run.bf16_rounding, run.seed).
BackendOptions backend_options(const RunConfig& cfg);

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  virtual const Model& model() const = 0;
  virtual bool on_device() const = 0;

  // fp32 master parameters and gradients, model.layout() order (host or device pointers).
  virtual float* params() = 0;
  virtual float* grads() = 0;
  virtual void upload_params(const float* host) = 0;
  virtual void download_params(float* host) const = 0;
  virtual void download_grads(float* host) const = 0;

  // Forward on one micro-batch of B rows of T tokens (B <= max_B, T <= max_T of make_backend).
  // With targets: returns the SUM of per-token losses over targets >= 0 and sets *valid to their
  // count. With targets == nullptr: computes logits only and returns 0.
  virtual double forward(const int32_t* inputs, const int32_t* targets, int B, int T, int64_t* valid) = 0;
  virtual void zero_grad() = 0;
  // Backward of the last forward with targets: every valid token's loss gets gradient `dloss`
  // (1 / tokens in the global batch for a mean loss). Accumulates into grads().
  virtual void backward(float dloss) = 0;

  // Host copy of the first V logits at (b, t) of the last forward.
  virtual void logits_at(int b, int t, float* out) = 0;
  // Sum of squares of all gradients, accumulated deterministically in double.
  virtual double grad_sq_norm() = 0;
  virtual void scale_grads(float s) = 0;
  // Host pointer to the input activations [rows, in] that multiplied parameter `param_index` in
  // the last forward (Newton-Muon's second-moment statistics); nullptr for non-matrix params.
  virtual const float* matrix_input(size_t param_index, int64_t* rows) = 0;

  // Overlapped data-parallel reduction (src/train/grad_reducer.h). While set, backward() reports
  // each range of grads() that is final for that backward, contiguous and descending: the final
  // norm and head [Model::block_begin(L), end) after the final norm's backward, block l's range
  // after block l, the embeddings [0, block_begin(0)) last. A device backend reports a range once
  // the work writing it is queued on its stream. An empty function turns the reports off.
  using GradReadyFn = std::function<void(size_t offset, size_t count)>;
  virtual void set_grad_ready(GradReadyFn fn) = 0;
  // The stream (a cudaStream_t) this backend queues its work on; nullptr for host backends.
  virtual void* stream_handle() const { return nullptr; }

  // Memory of the kind params() lives in, for code that packs parameter slices (ZeRO-1's weight
  // all-gather): an owned buffer of n floats, and a copy of n floats between such pointers that is
  // ordered after the work already queued by the backend.
  virtual std::shared_ptr<float> alloc_floats(size_t n) = 0;
  virtual void copy_floats(float* dst, const float* src, size_t n) = 0;

  // The optimizer step (1-based) whose forwards come next; called by the trainer before each
  // step's first forward. Anything a backend derives per step (the key of stochastic rounding)
  // is a function of it, so a resumed run repeats an uninterrupted one bit for bit.
  virtual void begin_step(int64_t /*step*/) {}
  // Nominal dense peak FLOP/s of the device at the precision training runs in, for MFU; 0 when
  // unknown (the CPU backend has no nominal peak).
  virtual double peak_flops() const { return 0.0; }
  // Bytes this backend holds for parameters, gradients, activations and scratch (device memory
  // on CUDA, host memory on the CPU backend).
  virtual size_t memory_bytes() const = 0;
};

// "cpu" or "cuda" (InputError if this build has no CUDA backend).
std::unique_ptr<Backend> make_backend(const std::string& name, const Model& model, int max_B, int max_T,
                                      const BackendOptions& opts = {});
std::unique_ptr<Backend> make_cpu_backend(const Model& model, int max_B, int max_T, const BackendOptions& opts = {});

}  // namespace llmtrain
