// Bucketed, overlapped gradient all-reduce; see grad_reducer.h.
#include "train/grad_reducer.h"

#include <string>

#include "llmtrain/error.h"

namespace llmtrain::dist {

GradReducer::GradReducer(Communicator& comm, float* grads, size_t n, size_t bucket_bytes)
    : comm_(comm), grads_(grads), n_(n), bucket_(bucket_bytes / sizeof(float)) {
  if (bucket_ == 0) bucket_ = 1;
}

void GradReducer::begin() {
  lo_ = pending_ = n_;
  buckets_ = 0;
  active_ = true;
}

void GradReducer::start(size_t lo, size_t hi) {
  if (hi <= lo) return;
  comm_.start_all_reduce_sum(grads_ + lo, hi - lo);
  ++buckets_;
}

void GradReducer::ready(size_t offset, size_t count) {
  if (!active_) throw RuntimeError("GradReducer: ready() outside begin()/finish()");
  if (offset + count != lo_)
    throw RuntimeError("GradReducer: gradients [" + std::to_string(offset) + ", " + std::to_string(offset + count) +
                       ") reported ready, but the next range must end at " + std::to_string(lo_) +
                       " (ranges must be contiguous and descending)");
  lo_ = offset;
  if (pending_ - lo_ >= bucket_) {
    start(lo_, pending_);
    pending_ = lo_;
  }
}

void GradReducer::finish() {
  if (!active_) throw RuntimeError("GradReducer: finish() without begin()");
  active_ = false;
  if (lo_ != 0) {
    comm_.wait_all_reduces();  // leave the communicator idle before reporting
    throw RuntimeError("GradReducer: backward reported gradients down to " + std::to_string(lo_) +
                       " only; [0, " + std::to_string(lo_) + ") were never reported ready");
  }
  start(0, pending_);
  comm_.wait_all_reduces();
}

}  // namespace llmtrain::dist
