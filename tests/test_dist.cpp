// Distributed plumbing: environment parsing (launch/torchrun, srun, mpirun), the TCP rendezvous
// store under concurrent clients and timeouts, the Gloo communicator with 2 and 4 ranks as threads
// of this process (each with its own Gloo context over loopback, rendezvous through our store),
// the communicator factory's choices and errors, and ZeRO-1's sharding plan and its exactness.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <random>
#include <thread>

#include "dist/tcp_store.h"
#include "train/zero.h"
#include "llmtrain/comm.h"
#include "llmtrain/error.h"
#include "llmtrain/optim.h"
#include "llmtrain/rng.h"
#include "util/cuda_plugin.h"
#if LLMTRAIN_HAVE_GLOO
#include "dist/gloo_comm.h"
#endif

using namespace llmtrain;
using namespace llmtrain::dist;
using Catch::Matchers::Contains;

namespace {

// Clears every variable the distributed code reads, sets the given ones, and restores all of
// them afterwards, so test cases cannot leak a rank into each other (or into the trainer tests).
class ScopedEnv {
 public:
  explicit ScopedEnv(std::initializer_list<std::pair<std::string, std::string>> vars) {
    static const char* kAll[] = {"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
                                 "MASTER_PORT", "SLURM_PROCID", "SLURM_STEP_NUM_TASKS", "SLURM_NTASKS",
                                 "SLURM_LOCALID", "SLURM_NODEID", "SLURM_STEP_TASKS_PER_NODE",
                                 "SLURM_NTASKS_PER_NODE", "SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST",
                                 "SLURM_JOB_ID", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE",
                                 "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE", "LLMTRAIN_STORE",
                                 "LLMTRAIN_STORE_PORT", "TORCHELASTIC_RUN_ID", "LLMTRAIN_DIST_TIMEOUT",
                                 "LLMTRAIN_RESTART_COUNT", "TORCHELASTIC_RESTART_COUNT", "GLOO_SOCKET_IFNAME",
                                 "LLMTRAIN_FORCE_COMM"};
    for (const char* k : kAll) {
      const char* v = std::getenv(k);
      if (v) saved_[k] = v;
      else unset_.push_back(k);
      ::unsetenv(k);
    }
    for (const auto& kv : vars) ::setenv(kv.first.c_str(), kv.second.c_str(), 1);
  }
  ~ScopedEnv() {
    for (const auto& kv : saved_) ::setenv(kv.first.c_str(), kv.second.c_str(), 1);
    for (const auto& k : unset_) ::unsetenv(k.c_str());
  }

 private:
  std::map<std::string, std::string> saved_;
  std::vector<std::string> unset_;
};

std::string input_error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  }
  return "(no InputError)";
}

std::string runtime_error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const RuntimeError& e) {
    return e.what();
  }
  return "(no RuntimeError)";
}

// A port that was free a moment ago (bind to 0, read it back, close).
int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, (sockaddr*)&a, sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, (sockaddr*)&a, &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

// Runs fn(rank) on `world` threads; rethrows the first exception.
void run_ranks(int world, const std::function<void(int)>& fn) {
  std::vector<std::thread> threads;
  std::vector<std::exception_ptr> errors(world);
  for (int r = 0; r < world; ++r)
    threads.emplace_back([&, r] {
      try {
        fn(r);
      } catch (...) {
        errors[r] = std::current_exception();
      }
    });
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace

// ---------------------------------------------------------------- environment

TEST_CASE("dist env: nothing set is a single process", "[dist]") {
  ScopedEnv env({});
  DistEnv e = dist_env_from_environment();
  CHECK(e.rank == 0);
  CHECK(e.world == 1);
  CHECK(e.local_rank == 0);
  CHECK(e.local_world == 1);
  CHECK_FALSE(e.force_comm);
}

TEST_CASE("dist env: LLMTRAIN_FORCE_COMM asks for the real communicator in a world of one", "[dist]") {
  {
    ScopedEnv env({{"LLMTRAIN_FORCE_COMM", "1"}});
    DistEnv e = dist_env_from_environment();
    CHECK(e.world == 1);
    CHECK(e.force_comm);
    CHECK(make_communicator("single", e)->name() == "single");
  }
  {
    ScopedEnv env({{"LLMTRAIN_FORCE_COMM", "0"}, {"RANK", "0"}, {"WORLD_SIZE", "1"}});
    DistEnv e = dist_env_from_environment();
    CHECK_FALSE(e.force_comm);
    CHECK(make_communicator("gloo", e)->name() == "single");
  }
  {
    ScopedEnv env({{"LLMTRAIN_FORCE_COMM", "yes"}});
    CHECK_THAT(input_error_of([] { dist_env_from_environment(); }), Contains("LLMTRAIN_FORCE_COMM=yes"));
  }
}

TEST_CASE("dist env: launch/torchrun variables", "[dist]") {
  ScopedEnv env({{"RANK", "5"}, {"WORLD_SIZE", "8"}, {"LOCAL_RANK", "1"}, {"LOCAL_WORLD_SIZE", "4"},
                 {"MASTER_ADDR", "node7"}, {"MASTER_PORT", "29999"}});
  DistEnv e = dist_env_from_environment();
  CHECK(e.rank == 5);
  CHECK(e.world == 8);
  CHECK(e.local_rank == 1);
  CHECK(e.local_world == 4);
  CHECK(e.master_addr == "node7");
  CHECK(e.master_port == 29999);
}

TEST_CASE("dist env: defaults without local variables or master address on one node", "[dist]") {
  ScopedEnv env({{"RANK", "1"}, {"WORLD_SIZE", "2"}});
  DistEnv e = dist_env_from_environment();
  CHECK(e.local_rank == 1);
  CHECK(e.local_world == 2);
  CHECK(e.master_addr == "127.0.0.1");
  CHECK(e.master_port == 29500);
}

TEST_CASE("dist env: bad values name the variable and the value", "[dist]") {
  {
    ScopedEnv env({{"RANK", "x1"}, {"WORLD_SIZE", "2"}});
    CHECK_THAT(input_error_of([] { dist_env_from_environment(); }), Contains("RANK=x1"));
  }
  {
    ScopedEnv env({{"RANK", "4"}, {"WORLD_SIZE", "4"}});
    std::string msg = input_error_of([] { dist_env_from_environment(); });
    CHECK_THAT(msg, Contains("RANK=4"));
    CHECK_THAT(msg, Contains("WORLD_SIZE=4"));
  }
  {
    ScopedEnv env({{"RANK", "0"}, {"WORLD_SIZE", "0"}});
    CHECK_THAT(input_error_of([] { dist_env_from_environment(); }), Contains("WORLD_SIZE=0"));
  }
  {
    ScopedEnv env({{"RANK", "-1"}, {"WORLD_SIZE", "2"}});
    CHECK_THAT(input_error_of([] { dist_env_from_environment(); }), Contains("RANK=-1"));
  }
  {
    ScopedEnv env({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", "70000"}});
    CHECK_THAT(input_error_of([] { dist_env_from_environment(); }), Contains("MASTER_PORT=70000"));
  }
  {
    ScopedEnv env({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", "2"}, {"LOCAL_WORLD_SIZE", "2"}});
    CHECK_THAT(input_error_of([] { dist_env_from_environment(); }), Contains("LOCAL_RANK=2"));
  }
  {
    ScopedEnv env({{"RANK", "0"}});
    CHECK_THAT(input_error_of([] { dist_env_from_environment(); }), Contains("WORLD_SIZE"));
  }
  {
    // Two nodes of 2 and nobody said where rank 0 is.
    ScopedEnv env({{"RANK", "0"}, {"WORLD_SIZE", "4"}, {"LOCAL_RANK", "0"}, {"LOCAL_WORLD_SIZE", "2"}});
    CHECK_THAT(input_error_of([] { dist_env_from_environment(); }), Contains("MASTER_ADDR"));
  }
}

TEST_CASE("dist env: srun tasks", "[dist]") {
  ScopedEnv env({{"SLURM_PROCID", "5"}, {"SLURM_STEP_NUM_TASKS", "6"}, {"SLURM_LOCALID", "0"}, {"SLURM_NODEID", "2"},
                 {"SLURM_STEP_TASKS_PER_NODE", "2(x2),1"}, {"SLURM_STEP_NODELIST", "gpu[03-04,09],cpu1"},
                 {"SLURM_JOB_ID", "123456"}});
  DistEnv e = dist_env_from_environment();
  CHECK(e.rank == 5);
  CHECK(e.world == 6);
  CHECK(e.local_rank == 0);
  CHECK(e.local_world == 1);  // the third node runs one task
  CHECK(e.master_addr == "gpu03");
  CHECK(e.master_port == 29500 + 456);
}

TEST_CASE("dist env: srun with MASTER_ADDR/PORT given and a bad task count", "[dist]") {
  {
    ScopedEnv env({{"SLURM_PROCID", "1"}, {"SLURM_STEP_NUM_TASKS", "2"}, {"SLURM_LOCALID", "1"},
                   {"SLURM_NTASKS_PER_NODE", "2"}, {"MASTER_ADDR", "head"}, {"MASTER_PORT", "1234"}});
    DistEnv e = dist_env_from_environment();
    CHECK(e.local_world == 2);
    CHECK(e.master_addr == "head");
    CHECK(e.master_port == 1234);
  }
  {
    ScopedEnv env({{"SLURM_PROCID", "1"}, {"SLURM_STEP_NUM_TASKS", "two"}});
    CHECK_THAT(input_error_of([] { dist_env_from_environment(); }), Contains("SLURM_STEP_NUM_TASKS=two"));
  }
  {
    // The batch script itself (no job step): not a distributed run.
    ScopedEnv env({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "8"}});
    CHECK(dist_env_from_environment().world == 1);
  }
}

TEST_CASE("dist env: mpirun", "[dist]") {
  ScopedEnv env({{"OMPI_COMM_WORLD_RANK", "3"}, {"OMPI_COMM_WORLD_SIZE", "4"}, {"OMPI_COMM_WORLD_LOCAL_RANK", "3"},
                 {"OMPI_COMM_WORLD_LOCAL_SIZE", "4"}});
  DistEnv e = dist_env_from_environment();
  CHECK(e.rank == 3);
  CHECK(e.world == 4);
  CHECK(e.local_rank == 3);
  CHECK(e.local_world == 4);
}

TEST_CASE("dist env: store endpoint and timeouts", "[dist]") {
  {
    ScopedEnv env({{"LLMTRAIN_STORE", "10.0.0.1:4321"}});
    StoreEndpoint ep = store_endpoint_from_environment(0, "127.0.0.1", 29500);
    CHECK(ep.host == "10.0.0.1");
    CHECK(ep.port == 4321);
    CHECK_FALSE(ep.host_here);
  }
  {
    ScopedEnv env({{"LLMTRAIN_STORE", "[::1]:77"}});
    StoreEndpoint ep = store_endpoint_from_environment(1, "127.0.0.1", 29500);
    CHECK(ep.host == "::1");
    CHECK(ep.port == 77);
  }
  {
    ScopedEnv env({});
    StoreEndpoint ep = store_endpoint_from_environment(0, "head", 29500);
    CHECK(ep.host == "head");
    CHECK(ep.port == 29500);
    CHECK(ep.host_here);
    CHECK_FALSE(store_endpoint_from_environment(1, "head", 29500).host_here);
    CHECK(dist_timeout_from_environment() == Millis(1800000));
    CHECK(restart_count_from_environment() == 0);
  }
  {
    ScopedEnv env({{"TORCHELASTIC_RUN_ID", "abc"}, {"TORCHELASTIC_RESTART_COUNT", "2"}});
    CHECK(store_endpoint_from_environment(0, "head", 29500).port == 29501);
    CHECK(restart_count_from_environment() == 2);
  }
  {
    ScopedEnv env({{"LLMTRAIN_STORE", "nohostport"}});
    CHECK_THAT(input_error_of([] { store_endpoint_from_environment(0, "h", 1); }), Contains("LLMTRAIN_STORE=nohostport"));
  }
  {
    ScopedEnv env({{"LLMTRAIN_DIST_TIMEOUT", "soon"}});
    CHECK_THAT(input_error_of([] { dist_timeout_from_environment(); }), Contains("LLMTRAIN_DIST_TIMEOUT=soon"));
  }
}

// ---------------------------------------------------------------- store

TEST_CASE("tcp store: set/get/wait/add/check/erase from several client threads", "[dist]") {
  TcpStoreServer server(0, "127.0.0.1");
  REQUIRE(server.port() > 0);
  const int kThreads = 6, kAdds = 50;
  std::atomic<int> seen{0};
  run_ranks(kThreads, [&](int t) {
    TcpStoreClient c("127.0.0.1", server.port(), Millis(5000));
    // Each thread publishes its key and blocks on its neighbour's, which may not exist yet.
    std::string payload = "value of " + std::to_string(t);
    payload.push_back('\0');
    payload += "binary\xff";
    c.set("k" + std::to_string(t), payload);
    const int next = (t + 1) % kThreads;
    std::string got = c.get("k" + std::to_string(next), Millis(5000));
    std::string want = "value of " + std::to_string(next);
    want.push_back('\0');
    want += "binary\xff";
    CHECK(got == want);
    std::vector<std::string> all;
    for (int i = 0; i < kThreads; ++i) all.push_back("k" + std::to_string(i));
    c.wait(all, Millis(5000));
    CHECK(c.check(all));
    for (int i = 0; i < kAdds; ++i) c.add("counter", 1);
    c.barrier("b1", kThreads, Millis(5000));
    CHECK(c.get("counter", Millis(1000)) == std::to_string(kThreads * kAdds));
    seen++;
  });
  CHECK(seen == kThreads);
  TcpStoreClient c("127.0.0.1", server.port());
  CHECK(c.add("counter", -1) == kThreads * kAdds - 1);
  CHECK(c.erase("k0"));
  CHECK_FALSE(c.erase("k0"));
  CHECK_FALSE(c.check({"k0", "k1"}));
  CHECK(c.check({"k1"}));
  c.set("text", "abc");
  CHECK_THAT(runtime_error_of([&] { c.add("text", 1); }), Contains("non-integer"));
  c.set("empty", "");
  CHECK(c.get("empty", Millis(100)).empty());
}

TEST_CASE("tcp store: timeouts name the key and the address", "[dist]") {
  TcpStoreServer server(0, "127.0.0.1");
  TcpStoreClient c("127.0.0.1", server.port());
  const std::string addr = "127.0.0.1:" + std::to_string(server.port());
  std::string msg = runtime_error_of([&] { c.get("missing/key", Millis(200)); });
  CHECK_THAT(msg, Contains("missing/key"));
  CHECK_THAT(msg, Contains(addr));
  c.set("present", "1");
  msg = runtime_error_of([&] { c.wait({"present", "absent"}, Millis(200)); });
  CHECK_THAT(msg, Contains("'absent'"));
  // The connection stays usable after a server-side timeout.
  c.set("absent", "2");
  CHECK(c.get("absent", Millis(100)) == "2");
  msg = runtime_error_of([&] { c.barrier("lonely", 2, Millis(200)); });
  CHECK_THAT(msg, Contains("lonely"));
}

TEST_CASE("tcp store: unreachable, foreign and vanishing servers", "[dist]") {
  const int port = free_port();
  std::string msg = runtime_error_of([&] { TcpStoreClient c("127.0.0.1", port, Millis(300)); });
  CHECK_THAT(msg, Contains("127.0.0.1:" + std::to_string(port)));

  // A listener that never answers the handshake (some other service).
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(fd, (sockaddr*)&a, sizeof a) == 0);
  REQUIRE(::listen(fd, 4) == 0);
  socklen_t len = sizeof a;
  ::getsockname(fd, (sockaddr*)&a, &len);
  msg = runtime_error_of([&] { TcpStoreClient c("127.0.0.1", ntohs(a.sin_port), Millis(300)); });
  CHECK_THAT(msg, Contains("not an llmtrain rendezvous store"));
  ::close(fd);

  // The server goes away while a client waits.
  auto server = std::make_unique<TcpStoreServer>(0, "127.0.0.1");
  TcpStoreClient c("127.0.0.1", server->port());
  std::thread stopper([&] {
    std::this_thread::sleep_for(Millis(200));
    server->stop();
  });
  msg = runtime_error_of([&] { c.get("never", Millis(10000)); });
  stopper.join();
  CHECK_THAT(msg, Contains("connection lost"));
  CHECK_THAT(runtime_error_of([&] { c.set("x", "y"); }), Contains("lost"));

  // A second server on a taken port: try_start says so with nullptr.
  TcpStoreServer first(0, "0.0.0.0");
  CHECK(TcpStoreServer::try_start(first.port()) == nullptr);
  CHECK_THAT(runtime_error_of([&] { TcpStoreServer second(first.port()); }), Contains("in use"));
}

TEST_CASE("tcp store: a client may connect before the server starts", "[dist]") {
  const int port = free_port();
  std::unique_ptr<TcpStoreServer> server;
  std::thread late([&] {
    std::this_thread::sleep_for(Millis(300));
    server = std::make_unique<TcpStoreServer>(port, "127.0.0.1");
  });
  TcpStoreClient c("127.0.0.1", port, Millis(10000));
  late.join();
  c.set("a", "b");
  CHECK(c.get("a", Millis(100)) == "b");
}

// ---------------------------------------------------------------- communicators

TEST_CASE("single communicator", "[dist]") {
  auto c = make_single_communicator();
  CHECK(c->name() == "single");
  CHECK(c->rank() == 0);
  CHECK(c->world() == 1);
  std::vector<float> x = {1.5f, -2.f};
  c->all_reduce_sum(x.data(), x.size());
  CHECK(x == std::vector<float>{1.5f, -2.f});
  std::vector<float> out(2);
  c->all_gather(x.data(), out.data(), 2);
  CHECK(out == x);
  c->all_gather(out.data(), out.data(), 2);  // in place
  CHECK(out == x);
  c->broadcast(x.data(), sizeof(float) * 2, 0);
  c->barrier();
}

TEST_CASE("communicator factory: choices and errors", "[dist]") {
  ScopedEnv env({});
  DistEnv one;
  CHECK(make_communicator("gloo", one)->name() == "single");
  CHECK(make_communicator("nccl", one)->name() == "single");
  CHECK_THAT(input_error_of([&] { make_communicator("mpi", one); }), Contains("mpi"));
  DistEnv two;
  two.world = 2;
  two.local_world = 2;
  const CudaPlugin* cuda = try_cuda_plugin();
  if (!cuda || !cuda->make_nccl)  // no NCCL to be had: an input error naming it, before any rendezvous
    CHECK_THAT(input_error_of([&] { make_communicator("nccl", two); }), Contains("nccl"));
  CHECK_THAT(input_error_of([&] { make_communicator("single", two); }), Contains("single"));
#if !LLMTRAIN_HAVE_GLOO
  CHECK_THAT(input_error_of([&] { make_communicator("gloo", two); }), Contains("without Gloo"));
#endif
}

TEST_CASE("communicator factory: nccl from the plugin fails cleanly without a GPU or without rank 0", "[dist]") {
  const CudaPlugin* cuda = try_cuda_plugin();
  if (!cuda || !cuda->make_nccl) {
    WARN("no CUDA plugin with NCCL in this build: nothing to check");
    return;
  }
  // Rank 1 of 2 through a store where rank 0 never publishes the unique id: without a GPU it stops
  // at the device check, with one it times out waiting for the id; either way a RuntimeError.
  TcpStoreServer server(0, "127.0.0.1");
  ScopedEnv env({{"LLMTRAIN_STORE", "127.0.0.1:" + std::to_string(server.port())}, {"LLMTRAIN_DIST_TIMEOUT", "1"}});
  DistEnv e;
  e.rank = 1;
  e.world = 2;
  e.local_rank = 1;
  e.local_world = 2;
  const std::string msg = runtime_error_of([&] { make_communicator("nccl", e); });
  INFO(msg);
  CHECK((msg.find("no CUDA device") != std::string::npos || msg.find("nccl_unique_id") != std::string::npos));
}

#if LLMTRAIN_HAVE_GLOO

namespace {

// `world` Gloo communicators as threads, rendezvous through one store; fn(rank, comm).
void with_gloo_ranks(int world, const std::string& prefix, const std::function<void(int, Communicator&)>& fn) {
  TcpStoreServer server(0, "127.0.0.1");
  run_ranks(world, [&](int r) {
    GlooOptions o;
    o.rank = r;
    o.world = world;
    o.store = std::make_shared<TcpStoreClient>("127.0.0.1", server.port());
    o.prefix = prefix;
    o.timeout = Millis(30000);
    o.host = "127.0.0.1";
    auto comm = make_gloo_communicator(std::move(o));
    REQUIRE(comm->name() == "gloo");
    REQUIRE(comm->rank() == r);
    REQUIRE(comm->world() == world);
    fn(r, *comm);
  });
}

}  // namespace

TEST_CASE("gloo communicator: collectives with 2 and 4 ranks are exact", "[dist]") {
  for (int world : {2, 4}) {
    SECTION("world " + std::to_string(world)) {
      with_gloo_ranks(world, "test/", [world](int r, Communicator& c) {
        // Integer-valued floats sum exactly in any order.
        const size_t n = 1000003;  // odd, larger than one Gloo segment
        std::vector<float> f(n);
        for (size_t i = 0; i < n; ++i) f[i] = float((i % 1000) * (r + 1));
        c.all_reduce_sum(f.data(), n);
        const float scale = float(world * (world + 1) / 2);
        size_t bad = 0;
        for (size_t i = 0; i < n; ++i) bad += f[i] != float(i % 1000) * scale;
        CHECK(bad == 0);

        std::vector<double> d = {0.5 * r, 1e300, -3.0};
        c.all_reduce_sum(d.data(), d.size());
        CHECK(d[0] == 0.5 * world * (world - 1) / 2);
        CHECK(d[1] == 1e300 * world);
        CHECK(d[2] == -3.0 * world);

        // Tiny and empty buffers.
        float one = float(r);
        c.all_reduce_sum(&one, 1);
        CHECK(one == float(world * (world - 1) / 2));
        c.all_reduce_sum(static_cast<float*>(nullptr), 0);

        // all_gather, out of place and in place.
        const size_t m = 5;
        std::vector<float> in(m), out(m * world, -1.f);
        for (size_t i = 0; i < m; ++i) in[i] = float(100 * r + i);
        c.all_gather(in.data(), out.data(), m);
        for (int q = 0; q < world; ++q)
          for (size_t i = 0; i < m; ++i) CHECK(out[q * m + i] == float(100 * q + i));
        std::vector<float> inplace(m * world, -1.f);
        for (size_t i = 0; i < m; ++i) inplace[r * m + i] = float(7 * r + i);
        c.all_gather(inplace.data() + r * m, inplace.data(), m);
        for (int q = 0; q < world; ++q)
          for (size_t i = 0; i < m; ++i) CHECK(inplace[q * m + i] == float(7 * q + i));

        // broadcast of raw bytes from a non-zero root, odd length.
        std::string bytes(37, char('a' + r));
        c.broadcast(&bytes[0], bytes.size(), world - 1);
        CHECK(bytes == std::string(37, char('a' + world - 1)));
        CHECK_THROWS_AS(c.broadcast(&bytes[0], bytes.size(), world), RuntimeError);

        c.barrier();
      });
    }
  }
}

TEST_CASE("gloo communicator: bucket sums run on the worker while the caller goes on", "[dist]") {
  for (int world : {2, 4}) {
    SECTION("world " + std::to_string(world)) {
      with_gloo_ranks(world, "async/", [world](int r, Communicator& c) {
        // Integer-valued floats: exact in any order; buckets of odd sizes, started top down.
        const size_t n = 300007;
        std::vector<float> g(n);
        for (size_t i = 0; i < n; ++i) g[i] = float((i % 97) * (r + 1));
        const size_t cuts[] = {n, 250001, 123, 122, 0};
        for (int b = 0; b + 1 < 5; ++b) c.start_all_reduce_sum(g.data() + cuts[b + 1], cuts[b] - cuts[b + 1]);
        // The caller keeps computing on other memory meanwhile.
        std::vector<float> other(1000, 1.0f);
        for (auto& x : other) x *= 2.0f;
        c.wait_all_reduces();
        const float scale = float(world * (world + 1) / 2);
        size_t bad = 0;
        for (size_t i = 0; i < n; ++i) bad += g[i] != float(i % 97) * scale;
        CHECK(bad == 0);
        // Waiting with nothing queued returns, and blocking collectives work again afterwards.
        c.wait_all_reduces();
        double d = 1.0;
        c.all_reduce_sum(&d, 1);
        CHECK(d == double(world));
      });
    }
  }
}

TEST_CASE("gloo communicator: sums of arbitrary floats are identical on every rank and every run", "[dist]") {
  const int world = 4;
  const size_t n = 4099;
  auto run_once = [&]() {
    std::vector<std::vector<float>> results(world);
    with_gloo_ranks(world, "det/", [&](int r, Communicator& c) {
      std::mt19937 rng(1234 + r);
      std::normal_distribution<float> nd(0.f, 1.f);
      std::vector<float> x(n);
      for (auto& v : x) v = nd(rng) * std::pow(10.f, float(r % 3) - 1.f);
      c.all_reduce_sum(x.data(), n);
      results[r] = x;
    });
    return results;
  };
  auto a = run_once();
  auto b = run_once();
  for (int r = 0; r < world; ++r) {
    CHECK(std::memcmp(a[r].data(), a[0].data(), n * sizeof(float)) == 0);
    CHECK(std::memcmp(a[r].data(), b[r].data(), n * sizeof(float)) == 0);
  }
}

TEST_CASE("gloo communicator: a missing rank fails the rendezvous with a clear error", "[dist]") {
  TcpStoreServer server(0, "127.0.0.1");
  GlooOptions o;
  o.rank = 0;
  o.world = 2;
  o.store = std::make_shared<TcpStoreClient>("127.0.0.1", server.port());
  o.prefix = "alone/";
  o.timeout = Millis(500);
  o.host = "127.0.0.1";
  std::string msg = runtime_error_of([&] { make_gloo_communicator(std::move(o)); });
  CHECK_THAT(msg, Contains("gloo rendezvous of rank 0/2"));
  CHECK_THAT(msg, Contains("alone/1"));
}

TEST_CASE("communicator factory: gloo through the launcher's store and through rank 0's", "[dist]") {
  SECTION("launcher store (LLMTRAIN_STORE)") {
    TcpStoreServer server(0, "127.0.0.1");
    ScopedEnv env({{"LLMTRAIN_STORE", "127.0.0.1:" + std::to_string(server.port())}, {"LLMTRAIN_RESTART_COUNT", "3"}});
    for (int round = 0; round < 2; ++round)  // a second communicator must not reuse the first's keys
      run_ranks(2, [&](int r) {
        DistEnv e;
        e.rank = r;
        e.world = 2;
        e.local_rank = r;
        e.local_world = 2;
        auto c = make_communicator("gloo", e);
        CHECK(c->name() == "gloo");
        double x = r + 1;
        c->all_reduce_sum(&x, 1);
        CHECK(x == 3.0);
      });
    TcpStoreClient c("127.0.0.1", server.port());
    CHECK(c.check({"llmtrain/r3/gloo2/0"}));
  }
  SECTION("rank 0 hosts the store on MASTER_PORT") {
    ScopedEnv env({});
    const int port = free_port();
    run_ranks(3, [&](int r) {
      DistEnv e;
      e.rank = r;
      e.world = 3;
      e.local_rank = r;
      e.local_world = 3;
      e.master_port = port;
      auto c = make_communicator("gloo", e);
      float x = 1;
      c->all_reduce_sum(&x, 1);
      CHECK(x == 3.f);
      c->barrier();  // rank 0 keeps the store up until everyone is through
    });
  }
}

#endif  // LLMTRAIN_HAVE_GLOO

// ---------------------------------------------------------------- ZeRO-1


namespace {

// A few tensors in one contiguous buffer, like a model's: matrices of different shapes and some
// vectors, with weights initialised from a seed.
struct ToyParams {
  std::vector<ParamInfo> infos;
  std::vector<float> w, g;
  ToyParams() {
    add("emb", ParamRole::embedding, {40, 8});
    add("ln", ParamRole::norm_gain, {8});
    add("h.0.up", ParamRole::hidden_matrix, {96, 8});  // tall and large: RMNP splits it at every world size
    add("h.0.down", ParamRole::hidden_matrix, {8, 24});
    add("h.1.sq", ParamRole::hidden_matrix, {16, 16});
    add("h.1.bias", ParamRole::bias, {24});
    add("h.1.tall", ParamRole::hidden_matrix, {33, 5});
    w.resize(total);
    g.resize(total);
    Rng r(99);
    for (auto& x : w) x = 0.1f * (float)r.normal();
  }
  void add(const std::string& name, ParamRole role, std::vector<int64_t> shape) {
    ParamInfo p;
    p.name = name;
    p.role = role;
    p.shape = shape;
    p.numel = 1;
    for (int64_t d : shape) p.numel *= (size_t)d;
    p.offset = total;
    total += p.numel;
    infos.push_back(p);
  }
  // The matrices (matrix optimizers) or every tensor (adamw).
  std::vector<ParamRef> refs(bool matrices_only) {
    std::vector<ParamRef> out;
    for (const auto& p : infos)
      if (!matrices_only || p.role == ParamRole::hidden_matrix) out.push_back({&p, w.data() + p.offset, g.data() + p.offset});
    return out;
  }
  size_t total = 0;
};

}  // namespace

TEST_CASE("zero1: every element of a group is owned by exactly one rank, in whole rows or matrices", "[dist][zero]") {
  for (const std::string type : {"adamw", "rmnp", "muon"}) {
    const bool matrices_only = type != "adamw";
    for (int world = 1; world <= 5; ++world) {
      CAPTURE(type, world);
      ToyParams t;
      const auto all = t.refs(matrices_only);
      size_t group_total = 0;
      for (const auto& p : all) group_total += p.info->numel;
      std::vector<int> owner(t.total, -1);
      size_t min_owned = SIZE_MAX, max_owned = 0;
      for (int r = 0; r < world; ++r) {
        dist::Zero1 z(r, world);
        const auto mine = z.shard_group("g", type, all);
        size_t n = 0;
        for (const auto& p : mine) {
          const size_t at = (size_t)(p.w - t.w.data());
          REQUIRE(p.g == t.g.data() + at);
          REQUIRE(p.info->offset == at);
          n += p.info->numel;
          for (size_t j = 0; j < p.info->numel; ++j) {
            CHECK(owner[at + j] == -1);
            owner[at + j] = r;
          }
          const ParamInfo& whole = p.whole ? *p.whole : *p.info;
          CHECK(p.info->name == whole.name);
          CHECK(p.info->role == whole.role);
          if (type == "muon") CHECK(p.whole == nullptr);  // whole matrices only
          if (type == "rmnp") {
            REQUIRE(p.info->shape.size() == 2);
            CHECK(p.info->cols() == whole.cols());
            CHECK((at - whole.offset) % (size_t)whole.cols() == 0);  // starts at a row
          }
        }
        CHECK(n == z.owned(r));
        for (int q = 0; q < world; ++q) {  // every rank computes the same plan for every rank
          dist::Zero1 other(q, world);
          other.shard_group("g", type, all);
          CHECK(other.owned(r) == z.owned(r));
        }
        min_owned = std::min(min_owned, n);
        max_owned = std::max(max_owned, n);
      }
      for (const auto& p : all)
        for (size_t j = 0; j < p.info->numel; ++j) CHECK(owner[p.info->offset + j] >= 0);
      if (type == "adamw") CHECK(max_owned - min_owned <= 1);
      if (type == "rmnp") CHECK(max_owned <= group_total / world + 24);  // within one row (the widest, 24)
      if (type == "muon" && world == 2) CHECK(max_owned - min_owned <= 24 * 8);  // greedy by size
    }
  }
}

TEST_CASE("zero1: optimizers whose update couples tensors are refused by name", "[dist][zero]") {
  ToyParams t;
  dist::Zero1 z(0, 2);
  CHECK_THAT(input_error_of([&] { z.shard_group("matrix", "lowrank_muon", t.refs(true)); }),
             Contains("optimizer.matrix.type: lowrank_muon"));
  CHECK_THAT(input_error_of([&] { z.shard_group("matrix", "newton_muon", t.refs(true)); }), Contains("run.zero=0"));
  CHECK_THROWS_AS(dist::Zero1(2, 2), RuntimeError);
}

#if LLMTRAIN_HAVE_GLOO

TEST_CASE("zero1: sharded optimizers over gloo give bitwise the unsharded weights, state split exactly", "[dist][zero]") {
  const int steps = 4;
  for (const std::string type : {"adamw", "rmnp", "muon", "polargrad"}) {
    for (int world : {2, 3}) {
      CAPTURE(type, world);
      const bool matrices_only = type != "adamw";
      GroupConfig cfg;
      cfg.name = "g";
      cfg.type = type;
      cfg.lr = type == "adamw" ? 0.01f : 0.02f;
      cfg.weight_decay = 0.1f;
      // The same gradients on every rank (after the all-reduce they are), new ones each step.
      auto fill_grads = [](ToyParams& t, int step) {
        Rng r(1000 + step);
        for (auto& x : t.g) x = (float)r.normal();
      };
      // Reference: one process, full state.
      ToyParams ref;
      auto ref_opt = make_optimizer(cfg, ref.refs(matrices_only), 5);
      for (int s = 1; s <= steps; ++s) {
        fill_grads(ref, s);
        ref_opt->step(ref.refs(matrices_only), cfg.lr, s);
      }
      size_t ref_state = 0;
      for (const auto& st : ref_opt->state()) ref_state += st.numel;

      std::vector<std::vector<float>> final_w(world);
      std::vector<size_t> state_numel(world, 0);
      std::vector<size_t> owned(world, 0);
      with_gloo_ranks(world, "zero/" + type + std::to_string(world) + "/", [&](int r, Communicator& c) {
        ToyParams t;
        dist::Zero1 z(r, world);
        const auto all = t.refs(matrices_only);
        const auto mine = z.shard_group(cfg.name, cfg.type, all);
        auto opt = make_optimizer(cfg, mine, 5);
        for (int s = 1; s <= steps; ++s) {
          fill_grads(t, s);
          opt->step(mine, cfg.lr, s);
          z.all_gather_weights(c);
        }
        for (const auto& st : opt->state()) state_numel[r] += st.numel;
        owned[r] = z.owned(r);
        final_w[r] = t.w;
      });
      size_t sum_state = 0;
      for (int r = 0; r < world; ++r) {
        CAPTURE(r);
        CHECK(std::memcmp(final_w[r].data(), ref.w.data(), ref.w.size() * sizeof(float)) == 0);
        sum_state += state_numel[r];
        CHECK(owned[r] > 0);
        CHECK(state_numel[r] < ref_state);
      }
      CHECK(sum_state == ref_state);  // exactly sharded: no rank duplicates any state
      // And the weights did move (the comparison above is not of untouched buffers).
      CHECK(std::memcmp(ToyParams().w.data(), ref.w.data(), ref.w.size() * sizeof(float)) != 0);
    }
  }
}

#endif  // LLMTRAIN_HAVE_GLOO
