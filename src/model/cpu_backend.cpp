// The CPU reference backend: the Backend interface over CpuModel<float> (src/model/cpu_model.h).
// Parameters and gradients are host fp32, so host copies are plain memcpy. Of the BackendOptions
// only recompute applies (bf16_rounding concerns a bf16 weight copy this backend does not have).
#include <cstring>

#include "model/cpu_model.h"
#include "llmtrain/backend.h"

namespace llmtrain {
namespace {

class CpuBackend final : public Backend {
 public:
  CpuBackend(const Model& model, int max_B, int max_T, const BackendOptions& opts)
      : m_(model, max_B, max_T, opts.recompute) {}
  std::string name() const override { return "cpu"; }
  const Model& model() const override { return m_.model(); }
  bool on_device() const override { return false; }
  float* params() override { return m_.params(); }
  float* grads() override { return m_.grads(); }
  void upload_params(const float* host) override { std::memcpy(m_.params(), host, bytes()); }
  void download_params(float* host) const override { std::memcpy(host, const_cast<cpu::CpuModel<float>&>(m_).params(), bytes()); }
  void download_grads(float* host) const override { std::memcpy(host, const_cast<cpu::CpuModel<float>&>(m_).grads(), bytes()); }
  double forward(const int32_t* inputs, const int32_t* targets, int B, int T, int64_t* valid) override {
    return m_.forward(inputs, targets, B, T, valid);
  }
  void zero_grad() override { m_.zero_grad(); }
  void backward(float dloss) override { m_.backward(dloss); }
  void logits_at(int b, int t, float* out) override { std::memcpy(out, m_.logits(b, t), (size_t)m_.V() * sizeof(float)); }
  double grad_sq_norm() override { return m_.grad_sq_norm(); }
  void scale_grads(float s) override { m_.scale_grads(s); }
  const float* matrix_input(size_t param_index, int64_t* rows) override { return m_.matrix_input(param_index, rows); }
  void set_grad_ready(GradReadyFn fn) override { m_.grad_ready = std::move(fn); }
  std::shared_ptr<float> alloc_floats(size_t n) override {
    return std::shared_ptr<float>(new float[n](), std::default_delete<float[]>());
  }
  void copy_floats(float* dst, const float* src, size_t n) override {
    if (n > 0 && dst != src) std::memmove(dst, src, n * sizeof(float));
  }
  size_t memory_bytes() const override { return m_.memory_bytes(); }

 private:
  size_t bytes() const { return m_.model().num_params() * sizeof(float); }
  cpu::CpuModel<float> m_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(const Model& model, int max_B, int max_T, const BackendOptions& opts) {
  return std::make_unique<CpuBackend>(model, max_B, max_T, opts);
}

}  // namespace llmtrain
