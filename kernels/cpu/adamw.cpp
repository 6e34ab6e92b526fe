// AdamW's element update on the CPU (see cpu/optim.h for the formula), the reference of the fused
// device kernel kernels/cuda/adamw.cu, which computes the same expressions operation for operation.
#include <cmath>

#include "cpu/optim.h"

namespace llmtrain {

void adamw_update(float* w, const float* g, float* m, float* v, int64_t n, const AdamArgs& a) {
  const float b1 = a.b1, b2 = a.b2, omb1 = 1.0f - a.b1, omb2 = 1.0f - a.b2, eps = a.eps;
  const float ibc1 = a.ibc1, ibc2 = a.ibc2, step_size = a.step_size, keep = a.keep;
  const bool unc = a.uncorrected;
#pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (int64_t j = 0; j < n; ++j) {
    const float gj = g[j];
    const float mj = b1 * m[j] + omb1 * gj;
    const float vj = b2 * v[j] + omb2 * gj * gj;
    m[j] = mj;
    v[j] = vj;
    const float u = unc ? mj / (std::sqrt(vj) + eps) : (mj * ibc1) / (std::sqrt(vj * ibc2) + eps);
    w[j] = w[j] * keep - step_size * u;
  }
}

}  // namespace llmtrain
