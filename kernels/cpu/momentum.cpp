// The matrix optimizers' momentum rule and decoupled-decay update on the CPU (see cpu/optim.h), the
// references of kernels/cuda/momentum.cu. Element-wise, so the split over threads cannot change a bit.
#include "cpu/optim.h"

namespace llmtrain {

void momentum_update(const MomentumRule& r, float* m, const float* g, float* u, int64_t n) {
#pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (int64_t j = 0; j < n; ++j) {
    const float mj = r.next_m(m[j], g[j]);
    m[j] = mj;
    u[j] = r.u(mj, g[j]);
  }
}

void decay_update(float* w, const float* d, int64_t n, float keep, float step) {
#pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (int64_t j = 0; j < n; ++j) w[j] = w[j] * keep - step * d[j];
}

}  // namespace llmtrain
