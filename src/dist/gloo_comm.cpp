// Gloo communicator: one gloo::rendezvous::Context over the TCP transport per communicator, with
// a full mesh of pairs set up through our TCP store. all_reduce_sum always uses Gloo's ring
// algorithm, whose reduction order depends only on (world, n), so results are bitwise identical
// on every rank and across runs. Every collective gets a fresh tag so that messages of different
// operations can never be matched to each other. Gradient buckets (start_all_reduce_sum) are
// summed in order by one worker thread, so backward keeps computing while they travel.
#include "dist/gloo_comm.h"

#include <arpa/inet.h>
#include <gloo/allgather.h>
#include <gloo/allreduce.h>
#include <gloo/barrier.h>
#include <gloo/broadcast.h>
#include <gloo/common/error.h>
#include <gloo/math.h>
#include <gloo/rendezvous/context.h>
#include <gloo/rendezvous/store.h>
#include <gloo/transport/tcp/device.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>

#include "llmtrain/error.h"

namespace llmtrain::dist {
namespace {

// gloo::rendezvous::Store on top of our client, every key under `prefix`.
class StoreAdapter final : public gloo::rendezvous::Store {
 public:
  StoreAdapter(TcpStoreClient& c, std::string prefix, Millis timeout)
      : c_(c), prefix_(std::move(prefix)), timeout_(timeout) {}
  void set(const std::string& key, const std::vector<char>& data) override {
    c_.set(prefix_ + key, std::string(data.begin(), data.end()));
  }
  std::vector<char> get(const std::string& key) override {
    const std::string v = c_.get(prefix_ + key, timeout_);
    return std::vector<char>(v.begin(), v.end());
  }
  void wait(const std::vector<std::string>& keys) override { wait(keys, timeout_); }
  void wait(const std::vector<std::string>& keys, const std::chrono::milliseconds& timeout) override {
    std::vector<std::string> full;
    full.reserve(keys.size());
    for (const auto& k : keys) full.push_back(prefix_ + k);
    // Gloo passes its context timeout; never wait less than ours (slow ranks still loading data).
    c_.wait(full, std::max(Millis(timeout), timeout_));
  }

 private:
  TcpStoreClient& c_;
  std::string prefix_;
  Millis timeout_;
};

// The local address this machine would use to reach peer (a UDP "connect" sends nothing, it only
// picks the route). Loopback peers give 127.0.0.1.
std::string local_address_towards(const std::string& peer) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* res = nullptr;
  if (::getaddrinfo(peer.c_str(), "9", &hints, &res) != 0 || res == nullptr) return "";
  std::string out;
  const int fd = ::socket(res->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd >= 0) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (::connect(fd, res->ai_addr, res->ai_addrlen) == 0 && ::getsockname(fd, (sockaddr*)&ss, &len) == 0) {
      char buf[INET6_ADDRSTRLEN] = {0};
      const void* a = ss.ss_family == AF_INET6 ? (const void*)&((sockaddr_in6*)&ss)->sin6_addr
                                                : (const void*)&((sockaddr_in*)&ss)->sin_addr;
      if (::inet_ntop(ss.ss_family, a, buf, sizeof buf)) out = buf;
    }
    ::close(fd);
  }
  ::freeaddrinfo(res);
  return out;
}

class GlooCommunicator final : public Communicator {
 public:
  explicit GlooCommunicator(GlooOptions o)
      : server_(std::move(o.server)), store_(std::move(o.store)), rank_(o.rank), world_(o.world) {
    gloo::transport::tcp::attr attr;
    std::string where;
    if (!o.iface.empty()) {
      attr.iface = o.iface;
      where = "interface " + o.iface;
    } else {
      attr.hostname = !o.host.empty() ? o.host : local_address_towards(o.peer_host);
      if (attr.hostname.empty()) attr.hostname = "127.0.0.1";
      where = attr.hostname;
    }
    try {
      dev_ = gloo::transport::tcp::CreateDevice(attr);
    } catch (const std::exception& e) {
      throw RuntimeError("gloo: cannot open a TCP device on " + where + ": " + e.what() +
                         " (set GLOO_SOCKET_IFNAME to the network interface to use)");
    }
    ctx_ = std::make_shared<gloo::rendezvous::Context>(rank_, world_);
    ctx_->setTimeout(o.timeout);
    StoreAdapter adapter(*store_, o.prefix, o.timeout);
    try {
      ctx_->connectFullMesh(adapter, dev_);
    } catch (const RuntimeError& e) {
      throw RuntimeError("gloo rendezvous of rank " + std::to_string(rank_) + "/" + std::to_string(world_) +
                         " failed: " + e.what());
    } catch (const std::exception& e) {
      throw RuntimeError("gloo rendezvous of rank " + std::to_string(rank_) + "/" + std::to_string(world_) +
                         " (sockets on " + where + ") failed: " + e.what());
    }
  }

  ~GlooCommunicator() override {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (worker_.joinable()) worker_.join();
  }

  std::string name() const override { return "gloo"; }
  int rank() const override { return rank_; }
  int world() const override { return world_; }

  void all_reduce_sum(float* data, size_t n) override { reduce(data, n, &gloo::sum<float>); }
  void all_reduce_sum(double* data, size_t n) override { reduce(data, n, &gloo::sum<double>); }

  void all_gather(const float* in, float* out, size_t n) override {
    if (n == 0) return;
    guard("all_gather", n, [&] {
      gloo::AllgatherOptions opts(ctx_);
      // In place (in == out + rank*n) is expressed to Gloo by giving no input.
      if (in != out + (size_t)rank_ * n) opts.setInput(const_cast<float*>(in), n);
      opts.setOutput(out, n * (size_t)world_);
      opts.setTag(next_tag());
      gloo::allgather(opts);
    });
  }

  void broadcast(void* data, size_t bytes, int root) override {
    if (root < 0 || root >= world_)
      throw RuntimeError("broadcast: root " + std::to_string(root) + " is not a rank of a world of " +
                         std::to_string(world_));
    if (bytes == 0) return;
    guard("broadcast", bytes, [&] {
      gloo::BroadcastOptions opts(ctx_);
      opts.setOutput(static_cast<uint8_t*>(data), bytes);
      opts.setRoot(root);
      opts.setTag(next_tag());
      gloo::broadcast(opts);
    });
  }

  void start_all_reduce_sum(float* data, size_t n) override {
    if (n == 0) return;
    std::lock_guard<std::mutex> lk(mu_);
    if (!worker_.joinable()) worker_ = std::thread([this] { work(); });
    jobs_.push_back({data, n});
    cv_.notify_all();
  }

  void wait_all_reduces() override {
    std::unique_lock<std::mutex> lk(mu_);
    cv_.wait(lk, [&] { return jobs_.empty() && !busy_; });
    if (error_) {
      std::exception_ptr e = error_;
      error_ = nullptr;
      std::rethrow_exception(e);
    }
  }

  void barrier() override {
    guard("barrier", 0, [&] {
      gloo::BarrierOptions opts(ctx_);
      opts.setTag(next_tag());
      gloo::barrier(opts);
    });
  }

 private:
  template <typename T>
  void reduce(T* data, size_t n, void (*fn)(void*, const void*, const void*, size_t)) {
    if (n == 0) return;
    guard("all_reduce_sum", n, [&] {
      gloo::AllreduceOptions opts(ctx_);
      opts.setOutput(data, n);
      opts.setAlgorithm(gloo::AllreduceOptions::Algorithm::RING);
      opts.setReduceFunction(fn);
      opts.setTag(next_tag());
      gloo::allreduce(opts);
    });
  }

  uint32_t next_tag() { return tag_++; }

  // The bucket worker: sums queued buffers in order; after a failure it only drains the queue
  // (the first error is rethrown by wait_all_reduces).
  void work() {
    std::unique_lock<std::mutex> lk(mu_);
    for (;;) {
      cv_.wait(lk, [&] { return stop_ || !jobs_.empty(); });
      if (jobs_.empty()) return;  // stop_ with nothing left
      const Job job = jobs_.front();
      jobs_.pop_front();
      busy_ = true;
      const bool failed = error_ != nullptr;
      lk.unlock();
      std::exception_ptr err;
      if (!failed) {
        try {
          reduce(job.data, job.n, &gloo::sum<float>);
        } catch (...) {
          err = std::current_exception();
        }
      }
      lk.lock();
      if (err && !error_) error_ = err;
      busy_ = false;
      cv_.notify_all();
    }
  }

  // Gloo reports a dead peer or a timeout as gloo::Exception; name the operation and the rank.
  template <typename F>
  void guard(const char* op, size_t n, F&& f) {
    try {
      f();
    } catch (const gloo::Exception& e) {
      throw RuntimeError(std::string("gloo ") + op + " (rank " + std::to_string(rank_) + "/" +
                         std::to_string(world_) + ", " + std::to_string(n) + " elements) failed: " + e.what() +
                         " (did another rank exit? see its log)");
    }
  }

  // Destruction runs bottom-up: the context closes its pairs before the device and the store go.
  std::unique_ptr<TcpStoreServer> server_;
  std::shared_ptr<TcpStoreClient> store_;
  std::shared_ptr<gloo::transport::Device> dev_;
  std::shared_ptr<gloo::rendezvous::Context> ctx_;
  int rank_;
  int world_;
  uint32_t tag_ = 0;  // used by one thread at a time: the caller, or the worker between start and wait

  struct Job {
    float* data;
    size_t n;
  };
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;
  bool busy_ = false, stop_ = false;
  std::exception_ptr error_;
  std::thread worker_;  // last: joined in the destructor body, before anything it uses goes
};

}  // namespace

std::unique_ptr<Communicator> make_gloo_communicator(GlooOptions opts) {
  if (!opts.store) throw RuntimeError("make_gloo_communicator: no store");
  return std::make_unique<GlooCommunicator>(std::move(opts));
}

}  // namespace llmtrain::dist
