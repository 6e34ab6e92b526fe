// The overlapped gradient reduction: the CPU backend reports its gradients final in contiguous,
// descending ranges that follow the model's blocks, the reducer turns them into buckets of at
// least the requested size, started during backward and covering every gradient exactly once, and
// a backend or reducer that breaks the protocol is caught with a clear error.
#include <catch2/catch.hpp>
#include <cstring>
#include <utility>
#include <vector>

#include "train/grad_reducer.h"
#include "llmtrain/backend.h"
#include "llmtrain/comm.h"
#include "llmtrain/error.h"
#include "llmtrain/model.h"
#include "llmtrain/rng.h"
#include "test_util.h"

using namespace llmtrain;
using Catch::Matchers::Contains;

namespace {

// Records the collectives; leaves the data alone (a world where the other ranks contribute zero).
class RecordingComm final : public Communicator {
 public:
  std::vector<std::pair<size_t, size_t>> started;  // (offset from base, count)
  int waits = 0, sync_reduces = 0;
  const float* base = nullptr;
  std::vector<size_t> started_during_backward;  // number of reports seen when each bucket started
  size_t reports = 0;

  std::string name() const override { return "recording"; }
  int rank() const override { return 0; }
  int world() const override { return 2; }
  void all_reduce_sum(float*, size_t) override { ++sync_reduces; }
  void all_reduce_sum(double*, size_t) override {}
  void all_gather(const float*, float*, size_t) override {}
  void broadcast(void*, size_t, int) override {}
  void barrier() override {}
  void start_all_reduce_sum(float* data, size_t n) override {
    started.push_back({(size_t)(data - base), n});
    started_during_backward.push_back(reports);
  }
  void wait_all_reduces() override { ++waits; }
};

ModelConfig tiny(const std::string& arch, int layers) { return test::tiny_model(arch, layers); }

void random_batch(std::vector<int32_t>& in, std::vector<int32_t>& tg, int n, int V) {
  Rng r(5);
  in.clear();
  tg.clear();
  for (int i = 0; i < n; ++i) {
    in.push_back((int32_t)(r.next_u64() % V));
    tg.push_back((int32_t)(r.next_u64() % V));
  }
}

}  // namespace

TEST_CASE("model: block_begin gives each transformer block's contiguous range", "[dist][reducer]") {
  for (const std::string arch : {"gpt2", "llama"}) {
    CAPTURE(arch);
    Model m(tiny(arch, 3));
    const auto& ps = m.layout().params();
    for (const auto& p : ps) {
      if (p.layer >= 0) {
        CHECK(p.offset >= m.block_begin(p.layer));
        CHECK(p.offset + p.numel <= m.block_begin(p.layer + 1));
      } else {
        const bool before = p.offset + p.numel <= m.block_begin(0), after = p.offset >= m.block_begin(3);
        CHECK((before || after));
      }
    }
    CHECK(m.block_begin(0) > 0);  // the embeddings come first
    CHECK(m.block_begin(3) < m.num_params());  // the final norm (and head) last
  }
}

TEST_CASE("grad reducer: the cpu backend's reports become buckets started during backward", "[dist][reducer]") {
  for (const std::string arch : {"gpt2", "llama"}) {
    CAPTURE(arch);
    const int L = 3, B = 2, T = 8;
    Model m(tiny(arch, L));
    auto be = make_cpu_backend(m, B, T);
    std::vector<float> w(m.num_params());
    m.init_params(w.data(), 3);
    be->upload_params(w.data());
    std::vector<int32_t> in, tg;
    random_batch(in, tg, B * T, 50);

    // Reference gradients without any hook.
    be->zero_grad();
    int64_t valid = 0;
    be->forward(in.data(), tg.data(), B, T, &valid);
    be->backward(1.0f / (float)valid);
    std::vector<float> ref(m.num_params());
    be->download_grads(ref.data());

    // The raw reports: head, blocks L-1..0, embeddings.
    std::vector<std::pair<size_t, size_t>> reports;
    be->set_grad_ready([&](size_t o, size_t n) { reports.push_back({o, n}); });
    be->zero_grad();
    be->forward(in.data(), tg.data(), B, T, &valid);
    be->backward(1.0f / (float)valid);
    REQUIRE(reports.size() == (size_t)L + 2);
    CHECK(reports.front() == std::make_pair(m.block_begin(L), m.num_params() - m.block_begin(L)));
    for (int l = L - 1; l >= 0; --l)
      CHECK(reports[(size_t)(L - l)] == std::make_pair(m.block_begin(l), m.block_begin(l + 1) - m.block_begin(l)));
    CHECK(reports.back() == std::make_pair((size_t)0, m.block_begin(0)));

    // Buckets of ~ one block: several collectives, the first ones started before backward ended.
    const size_t block_bytes = (m.block_begin(1) - m.block_begin(0)) * sizeof(float);
    RecordingComm comm;
    comm.base = be->grads();
    dist::GradReducer red(comm, be->grads(), m.num_params(), block_bytes);
    be->set_grad_ready([&](size_t o, size_t n) {
      ++comm.reports;
      red.ready(o, n);
    });
    be->zero_grad();
    be->forward(in.data(), tg.data(), B, T, &valid);
    red.begin();
    be->backward(1.0f / (float)valid);
    red.finish();
    be->set_grad_ready(nullptr);
    CHECK(comm.waits == 1);
    CHECK(comm.sync_reduces == 0);
    REQUIRE(comm.started.size() >= 3);
    CHECK(red.buckets() == (int)comm.started.size());
    CHECK(comm.started_during_backward.front() < (size_t)L + 2);  // overlapped: before the last report
    size_t hi = m.num_params();
    for (size_t i = 0; i < comm.started.size(); ++i) {
      CAPTURE(i);
      CHECK(comm.started[i].first + comm.started[i].second == hi);  // contiguous, descending
      if (i + 1 < comm.started.size()) CHECK(comm.started[i].second * sizeof(float) >= block_bytes);
      hi = comm.started[i].first;
    }
    CHECK(hi == 0);  // every gradient in exactly one bucket
    // Reporting changes nothing about the gradients themselves.
    std::vector<float> got(m.num_params());
    be->download_grads(got.data());
    CHECK(std::memcmp(got.data(), ref.data(), got.size() * sizeof(float)) == 0);

    // A huge bucket: one collective, started by finish().
    RecordingComm one;
    one.base = be->grads();
    dist::GradReducer big(one, be->grads(), m.num_params(), (size_t)1 << 30);
    be->set_grad_ready([&](size_t o, size_t n) { big.ready(o, n); });
    be->zero_grad();
    be->forward(in.data(), tg.data(), B, T, &valid);
    big.begin();
    be->backward(1.0f / (float)valid);
    big.finish();
    be->set_grad_ready(nullptr);
    REQUIRE(one.started.size() == 1);
    CHECK(one.started[0] == std::make_pair((size_t)0, m.num_params()));
  }
}

TEST_CASE("grad reducer: out-of-order or missing reports are errors", "[dist][reducer]") {
  std::vector<float> g(100);
  RecordingComm comm;
  comm.base = g.data();
  dist::GradReducer red(comm, g.data(), g.size(), 16);
  CHECK_THROWS_WITH(red.ready(0, 10), Contains("outside begin()"));
  red.begin();
  red.ready(90, 10);
  CHECK_THROWS_WITH(red.ready(50, 10), Contains("must end at 90"));
  red.begin();
  red.ready(60, 40);
  CHECK_THROWS_WITH(red.finish(), Contains("[0, 60) were never reported"));
  CHECK_THROWS_AS(red.finish(), RuntimeError);  // no begin() since
  red.begin();
  red.ready(60, 40);
  red.ready(0, 60);
  red.finish();
  CHECK(red.buckets() == 2);
}
