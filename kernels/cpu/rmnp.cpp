// RMNP's preconditioner on the CPU: every row of U ([out, in], one output neuron's fan-in) divided
// by max(||row||_2, eps), the row norm summed in double. The device twin (kernels/cuda/rmnp.cu) fuses
// it with the momentum and the update.
#include <algorithm>
#include <cmath>

#include "cpu/optim.h"

namespace llmtrain {

void normalize_rows(const float* U, int64_t m, int64_t n, float eps, float* D) {
#pragma omp parallel for schedule(static) if (m * n > (1 << 15))
  for (int64_t i = 0; i < m; ++i) {
    const float* u = U + i * n;
    double s = 0;
    for (int64_t j = 0; j < n; ++j) s += (double)u[j] * (double)u[j];
    const float d = std::max((float)std::sqrt(s), eps);
    float* o = D + i * n;
    for (int64_t j = 0; j < n; ++j) o[j] = u[j] / d;
  }
}

}  // namespace llmtrain
