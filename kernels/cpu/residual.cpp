// Residual connection: out = a + b. Its backward is the identity on both branches, which the
// accumulate (+=) convention of every other backward already provides, so there is no
// residual_backward: callers hand the same gradient buffer to both branches.
#include <cstdint>

#include "cpu/ops.h"

namespace llmtrain::cpu {

template <typename F>
void residual_forward(F* out, const F* a, const F* b, int64_t N) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < N; ++i) out[i] = a[i] + b[i];
}

template void residual_forward<float>(float*, const float*, const float*, int64_t);
template void residual_forward<double>(double*, const double*, const double*, int64_t);

}  // namespace llmtrain::cpu
