// The backend interface: one model's forward, backward and gradient bookkeeping on one device.
// The training loop only talks to this interface, so it never branches on cpu vs cuda. Master
// parameters and gradients are fp32 in the model's ParamLayout; on the CPU they are host memory,
// on CUDA device memory (on_device() says which), with explicit host copies for checkpoints.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "llmtrain/model.h"

namespace llmtrain {

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

  // Overlapped data-parallel reduction (src/dist/grad_reducer.h). While set, backward() reports
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
};

// "cpu" or "cuda" (InputError if this build has no CUDA backend).
std::unique_ptr<Backend> make_backend(const std::string& name, const Model& model, int max_B, int max_T);
std::unique_ptr<Backend> make_cpu_backend(const Model& model, int max_B, int max_T);

}  // namespace llmtrain
