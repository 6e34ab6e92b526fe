// A small TCP key-value store for rendezvous: Gloo exchanges its pair addresses through it, NCCL
// will exchange its unique id, and `llmtrain launch` uses it to tell the launchers of a multi-node
// job that a worker failed. Gloo ships no TCP store (only Redis and file stores), so we host our own.
//
// Protocol (all integers little-endian): the client opens with the 4-byte magic "LTS1" and the
// server answers with the same magic, so a port held by some other service (torchrun's own store,
// a web server) fails at once with a clear message instead of hanging. Then each request is
//   u8 op | u32 body length | body
// and each reply is
//   u8 status (0 ok, 1 timeout, 2 error) | u32 body length | body
// where strings inside bodies are u32 length + bytes. Ops: SET key value; GET timeout_ms key
// (blocks until the key exists); WAIT timeout_ms n keys...; ADD key i64 (counter stored as decimal
// text, returns the new value); CHECK n keys... (u8 all present); DELETE key (u8 existed).
// Blocking ops time out on the server, which answers "timeout" and keeps the connection usable.
//
// The server runs one thread per connection (a job has a handful of connections per rank, so
// this stays small and keeps blocking GET/WAIT trivially correct).
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace llmtrain::dist {

using Millis = std::chrono::milliseconds;

class TcpStoreServer {
 public:
  // Listens on bind_addr:port (port 0 picks a free one; see port()). RuntimeError naming the
  // address when the port cannot be bound.
  explicit TcpStoreServer(int port, const std::string& bind_addr = "0.0.0.0");
  // Like the constructor, but returns nullptr when the port is already in use (someone else hosts
  // the store there) instead of throwing.
  static std::unique_ptr<TcpStoreServer> try_start(int port, const std::string& bind_addr = "0.0.0.0");
  ~TcpStoreServer();
  TcpStoreServer(const TcpStoreServer&) = delete;
  TcpStoreServer& operator=(const TcpStoreServer&) = delete;

  int port() const { return port_; }
  // Closes the listening socket and every connection; blocked clients see the connection close.
  void stop();

 private:
  struct Conn {
    int fd = -1;
    std::thread thread;
    std::atomic<bool> done{false};
  };
  struct Tag {};
  TcpStoreServer(Tag, int listen_fd, int port);
  void accept_loop();
  void serve(Conn* c);
  // Handles one request; returns false when the connection must be closed.
  bool handle(int fd, uint8_t op, const std::string& body);

  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread accept_thread_;
  std::mutex conns_mu_;
  std::list<Conn> conns_;

  std::mutex mu_;  // guards data_
  std::condition_variable cv_;
  std::map<std::string, std::string> data_;
};

class TcpStoreClient {
 public:
  // Connects to host:port, retrying while the server is not up yet (the rank hosting it may start
  // later than we do) until connect_timeout; RuntimeError naming the address after that.
  TcpStoreClient(const std::string& host, int port, Millis connect_timeout = Millis(60000));
  ~TcpStoreClient();
  TcpStoreClient(const TcpStoreClient&) = delete;
  TcpStoreClient& operator=(const TcpStoreClient&) = delete;

  void set(const std::string& key, const std::string& value);
  // Blocks until key exists; RuntimeError naming the key and address after timeout.
  std::string get(const std::string& key, Millis timeout);
  // Blocks until every key exists; RuntimeError naming a missing key after timeout.
  void wait(const std::vector<std::string>& keys, Millis timeout);
  // Adds delta to the integer counter at key (missing = 0) and returns the new value.
  int64_t add(const std::string& key, int64_t delta);
  // True when every key exists (does not block).
  bool check(const std::vector<std::string>& keys);
  // True when the key existed.
  bool erase(const std::string& key);
  // Blocks until `world` callers have entered the barrier `name` (each name is single use).
  void barrier(const std::string& name, int world, Millis timeout);

  std::string address() const { return host_ + ":" + std::to_string(port_); }

 private:
  // Sends one request and reads its reply; io_timeout bounds the wait for the reply.
  uint8_t request(uint8_t op, const std::string& body, std::string& reply, Millis io_timeout, const char* what);
  [[noreturn]] void fail(const std::string& msg);

  std::string host_;
  int port_ = 0;
  int fd_ = -1;
  std::mutex mu_;  // one request at a time
};

// Where the job's store lives, read from the environment (see docs/distributed.md):
//   LLMTRAIN_STORE=host:port   set by `llmtrain launch`: connect there, host nothing;
//   else MASTER_ADDR and LLMTRAIN_STORE_PORT, else MASTER_PORT (+1 under torchrun, whose agent
//   already holds MASTER_PORT with its own store), hosted by rank 0 itself.
struct StoreEndpoint {
  std::string host;
  int port = 0;
  bool host_here = false;  // this process (rank 0 without a launcher store) should host it
};
StoreEndpoint store_endpoint_from_environment(int rank, const std::string& master_addr, int master_port);

// Timeout for rendezvous and collectives: LLMTRAIN_DIST_TIMEOUT seconds, default 1800.
Millis dist_timeout_from_environment();
// The restart attempt (LLMTRAIN_RESTART_COUNT from our launcher, TORCHELASTIC_RESTART_COUNT from
// torchrun), used to keep the keys of successive attempts apart; 0 when neither is set.
int restart_count_from_environment();

// "host:port" -> parts; InputError naming `what` (the variable) on a malformed value.
void parse_host_port(const std::string& s, const std::string& what, std::string& host, int& port);

}  // namespace llmtrain::dist
