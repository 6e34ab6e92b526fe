// Bucketed gradient all-reduce, overlapped with backward. A backend reports, during the last
// backward of a step, each range of the gradient buffer whose values are final, from the lm_head
// end of the layout down to the embeddings (the order backward produces them). The reducer
// gathers those ranges into buckets of at least `bucket_bytes` and starts each bucket's sum as
// soon as it is full, so the communication of layer l runs while layers l-1..0 compute; finish()
// starts the remainder and waits. Buckets depend only on the layout and the bucket size, so every
// rank issues the same collectives in the same order, and a rerun gives the same bits.
#pragma once
#include <cstddef>

#include "llmtrain/comm.h"

namespace llmtrain::dist {

class GradReducer {
 public:
  // grads: the n-float gradient buffer (host or device, as the communicator expects).
  GradReducer(Communicator& comm, float* grads, size_t n, size_t bucket_bytes);

  // Before the backward that makes the gradients final.
  void begin();
  // The gradients [offset, offset + count) are final (for a device backend: queued on the
  // producer stream). Ranges must arrive contiguous and descending, ending at offset 0;
  // RuntimeError otherwise (a backend bug, not an input error).
  void ready(size_t offset, size_t count);
  // After that backward: every gradient is summed over the ranks when this returns (for nccl:
  // the producer stream is ordered after the sums).
  void finish();

  // Collectives started in the last step (for tests and logs).
  int buckets() const { return buckets_; }

 private:
  void start(size_t lo, size_t hi);

  Communicator& comm_;
  float* grads_;
  size_t n_;
  size_t bucket_;  // elements
  size_t lo_ = 0;       // everything in [lo_, n_) has been reported ready
  size_t pending_ = 0;  // [lo_, pending_) is ready but not yet started
  bool active_ = false;
  int buckets_ = 0;
};

}  // namespace llmtrain::dist
