// The emulator's execution engine: one fiber per CUDA thread, blocks run one after another on the
// calling OS thread, a block barrier / warp barrier scheduler, the warp collectives (shuffles,
// ldmatrix, mma.sync m16n8k16) computed per lane from a warp exchange area exactly as the PTX ISA
// lays out the fragments, and cp.async groups completed at their wait.
//
// Why fibers and not loops: kernels are plain functions with __syncthreads in the middle, so each
// thread needs its own stack. The context switch is a few hand-written x86-64 instructions
// (glibc swapcontext makes a sigprocmask syscall per switch, ~50x slower). Between two barriers
// the threads of a block run in a seeded, per-phase shuffled order (warps and lanes), so a missing
// __syncthreads or __syncwarp changes which value a reader sees and the comparison tests fail.
// Barrier misuse (threads exiting or diverging while others wait, collectives whose mask names
// absent lanes) is reported as a launch failure with a message on stderr, never a hang.
#include <sys/mman.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda_emu.h"
#include "emu_internal.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define EMU_ASAN 1
#endif

#if !defined(__x86_64__)
#error "the CUDA emulator's context switch is x86-64 only"
#endif

// void emu_switch_context(void** save_sp, void* load_sp): saves the callee-saved registers on the
// current stack, stores the stack pointer, loads the other one and restores its registers.
asm(R"(
.text
.globl emu_switch_context
.type emu_switch_context,@function
emu_switch_context:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
.size emu_switch_context,.-emu_switch_context
.section .note.GNU-stack,"",@progbits
.text
)");
extern "C" void emu_switch_context(void** save_sp, void* load_sp);

namespace emu {

ThreadCoords g_coords;

namespace {

#if defined(EMU_ASAN)
constexpr size_t kStackBytes = 1u << 20;  // ASan's redzones make frames several times larger
#else
constexpr size_t kStackBytes = 256u << 10;
#endif
constexpr size_t kGuardBytes = 4096;

enum class St { runnable, block_bar, warp_bar, exited };

struct PendingCopy {
  void* dst;
  const void* src;
  int bytes;
  long group;  // -1 until committed
};

struct Fiber {
  void* sp = nullptr;
  char* stack_lo = nullptr;  // usable stack [stack_lo, stack_lo + kStackBytes)
  St st = St::exited;
  uint3 tid{};
  int lin = 0, lane = 0, warp = 0;
  unsigned mask = 0;       // of the warp collective it waits at
  unsigned long seq = 0;   // warp collectives done: parity picks the exchange buffer
  std::vector<PendingCopy> copies;
  long committed = 0;      // cp.async groups committed
  std::exception_ptr error;
};

// One warp exchange slot per thread and parity: what a lane deposits for a collective.
struct Slot {
  uint32_t w[6];
  const void* ptr;
  uint64_t bits;
};

struct Engine {
  std::vector<Fiber> fibers;
  std::vector<Slot> slots[2];
  void* sched_sp = nullptr;
  Fiber* cur = nullptr;
  void (*body)(void*) = nullptr;
  void* body_arg = nullptr;
  std::vector<unsigned char, std::allocator<unsigned char>> smem_store;
  unsigned char* smem = nullptr;
  size_t smem_bytes = 0;
  std::string error;  // first failure of the current launch
  std::mt19937_64 rng{0x5eed};
  unsigned long launches = 0;
#if defined(EMU_ASAN)
  void* fake_stack = nullptr;
  const void* main_bottom = nullptr;
  size_t main_size = 0;
#endif
} g;

[[noreturn]] void fiber_main();

void fail(const std::string& msg) {
  if (g.error.empty()) g.error = msg;
}

std::string where(const Fiber& f) {
  return "block (" + std::to_string(g_coords.block_idx.x) + "," + std::to_string(g_coords.block_idx.y) + "," +
         std::to_string(g_coords.block_idx.z) + ") thread (" + std::to_string(f.tid.x) + "," +
         std::to_string(f.tid.y) + "," + std::to_string(f.tid.z) + ")";
}

void ensure_fibers(size_t n) {
  while (g.fibers.size() < n) {
    Fiber f;
    void* mem = mmap(nullptr, kStackBytes + kGuardBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                     -1, 0);
    if (mem == MAP_FAILED) throw std::runtime_error("emu: cannot map a fiber stack");
    mprotect(mem, kGuardBytes, PROT_NONE);  // a stack overflow faults instead of corrupting
    f.stack_lo = static_cast<char*>(mem) + kGuardBytes;
    g.fibers.push_back(std::move(f));
  }
  for (auto& s : g.slots) s.resize(std::max(s.size(), n));
}

// Fresh stack whose first switch "returns" into fiber_main.
void reset_fiber(Fiber& f) {
#if defined(EMU_ASAN)
  __asan_unpoison_memory_region(f.stack_lo, kStackBytes);
#endif
  auto* top = reinterpret_cast<uint64_t*>(f.stack_lo + kStackBytes);
  *--top = 0;                                            // fake return address of fiber_main
  *--top = reinterpret_cast<uint64_t>(&fiber_main);      // ret target
  for (int i = 0; i < 6; ++i) *--top = 0;                // rbp rbx r12 r13 r14 r15
  uint32_t csr[2] = {0x1F80, 0x037F};                    // default mxcsr and x87 control word
  *--top = 0;
  std::memcpy(top, csr, 8);
  f.sp = top;
  f.st = St::runnable;
  f.mask = 0;
  f.seq = 0;
  f.copies.clear();
  f.committed = 0;
  f.error = nullptr;
}

void switch_to(Fiber& f) {
  g.cur = &f;
  g_coords.thread_idx = f.tid;
#if defined(EMU_ASAN)
  __sanitizer_start_switch_fiber(&g.fake_stack, f.stack_lo, kStackBytes);
#endif
  emu_switch_context(&g.sched_sp, f.sp);
#if defined(EMU_ASAN)
  __sanitizer_finish_switch_fiber(g.fake_stack, nullptr, nullptr);
#endif
  g.cur = nullptr;
}

// From a fiber: back to the scheduler, until it switches to us again.
void yield_to_scheduler(bool exiting = false) {
  Fiber* self = g.cur;
#if defined(EMU_ASAN)
  void* fake = nullptr;
  __sanitizer_start_switch_fiber(exiting ? nullptr : &fake, g.main_bottom, g.main_size);
#endif
  emu_switch_context(&self->sp, g.sched_sp);
#if defined(EMU_ASAN)
  __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#endif
  (void)exiting;
}

[[noreturn]] void fiber_main() {
#if defined(EMU_ASAN)
  __sanitizer_finish_switch_fiber(nullptr, &g.main_bottom, &g.main_size);
#endif
  Fiber* self = g.cur;
  try {
    g.body(g.body_arg);
  } catch (...) {
    self->error = std::current_exception();
  }
  self->st = St::exited;
  yield_to_scheduler(true);
  std::abort();  // never resumed
}

Fiber& self_fiber() {
  if (g.cur == nullptr) {
    std::fprintf(stderr, "emu: a device-only function was called outside a kernel\n");
    std::abort();
  }
  return *g.cur;
}

template <class V>
void shuffle(V& v) {
  std::shuffle(v.begin(), v.end(), g.rng);
}

// Runs one block to completion (or to the first error). Returns false on error.
bool run_block(int nthreads, const dim3& block) {
  const int nwarps = (nthreads + 31) / 32;
  for (int i = 0; i < nthreads; ++i) {
    Fiber& f = g.fibers[i];
    reset_fiber(f);
    f.lin = i;
    f.lane = i & 31;
    f.warp = i >> 5;
    f.tid = uint3{static_cast<unsigned>(i % block.x), static_cast<unsigned>((i / block.x) % block.y),
                  static_cast<unsigned>(i / (block.x * block.y))};
  }
  if (g.smem_bytes) std::memset(g.smem, 0xFF, g.smem_bytes);  // unwritten shared memory reads NaN / -1
  std::vector<int> warp_order(nwarps), lane_order(32);
  for (int w = 0; w < nwarps; ++w) warp_order[w] = w;
  for (int l = 0; l < 32; ++l) lane_order[l] = l;
  for (;;) {
    shuffle(warp_order);
    shuffle(lane_order);
    for (int w : warp_order) {
      const int lo = w * 32, hi = std::min(nthreads, lo + 32);
      for (;;) {
        for (int l : lane_order) {
          if (lo + l >= hi) continue;
          Fiber& f = g.fibers[lo + l];
          while (f.st == St::runnable) {
            switch_to(f);
            if (f.error) {
              try {
                std::rethrow_exception(f.error);
              } catch (const std::exception& e) {
                fail(where(f) + ": exception in kernel: " + e.what());
              } catch (...) {
                fail(where(f) + ": exception in kernel");
              }
              return false;
            }
            if (!g.error.empty()) return false;
          }
        }
        // Every lane of this warp is blocked or done: release a warp collective if one is pending.
        unsigned waiting = 0, mask = 0;
        unsigned long seq = 0;
        bool any = false;
        for (int i = lo; i < hi; ++i)
          if (g.fibers[i].st == St::warp_bar) {
            waiting |= 1u << (i - lo);
            if (any && (g.fibers[i].mask != mask || g.fibers[i].seq != seq)) {
              fail(where(g.fibers[i]) + ": lanes of warp " + std::to_string(w) +
                   " wait at different warp collectives (mask or sequence differs)");
              return false;
            }
            mask = g.fibers[i].mask;
            seq = g.fibers[i].seq;
            any = true;
          }
        if (!any) break;
        if ((mask & waiting) != mask || (waiting & ~mask) != 0) {
          char buf[160];
          std::snprintf(buf, sizeof buf,
                        ": warp %d collective with mask 0x%08x but lanes 0x%08x arrived (the others exited, "
                        "wait at __syncthreads or do not exist)",
                        w, mask, waiting);
          fail(where(g.fibers[lo + __builtin_ctz(waiting)]) + buf);
          return false;
        }
        for (int i = lo; i < hi; ++i)
          if (g.fibers[i].st == St::warp_bar) g.fibers[i].st = St::runnable;
      }
    }
    int at_bar = 0, exited = 0;
    for (int i = 0; i < nthreads; ++i) {
      if (g.fibers[i].st == St::block_bar) ++at_bar;
      if (g.fibers[i].st == St::exited) ++exited;
    }
    if (exited == nthreads) return true;
    if (exited > 0) {
      for (int i = 0; i < nthreads; ++i)
        if (g.fibers[i].st == St::exited) {
          fail(where(g.fibers[i]) + " exited while " + std::to_string(at_bar) +
               " threads of its block wait at __syncthreads (barrier divergence)");
          return false;
        }
    }
    for (int i = 0; i < nthreads; ++i) g.fibers[i].st = St::runnable;
  }
}

// The exchange slot a lane fills for the current collective, and a reader for another lane's.
Slot& my_slot(Fiber& f) { return g.slots[f.seq & 1][f.lin]; }
const Slot& lane_slot(const Fiber& f, int lane) { return g.slots[f.seq & 1][f.warp * 32 + lane]; }

void warp_barrier(Fiber& f, unsigned mask) {
  f.mask = mask;
  f.st = St::warp_bar;
  yield_to_scheduler();
}

bool in_smem(const void* p, size_t n) {
  auto* c = static_cast<const unsigned char*>(p);
  return g.smem != nullptr && c >= g.smem && c + n <= g.smem + g.smem_bytes;
}

}  // namespace

// ---------------------------------------------------------------- public entry points

void* dynamic_smem() { return g.smem; }

void sync_block() {
  Fiber& f = self_fiber();
  f.st = St::block_bar;
  yield_to_scheduler();
}

void sync_warp(unsigned mask) {
  Fiber& f = self_fiber();
  warp_barrier(f, mask);
  ++f.seq;
}

uint64_t shfl_bits(unsigned mask, uint64_t bits, ShflMode mode, int arg, int width) {
  Fiber& f = self_fiber();
  if (width <= 0 || width > 32 || (width & (width - 1))) fail(where(f) + ": shfl width must be a power of two <= 32");
  my_slot(f).bits = bits;
  warp_barrier(f, mask);
  const int lane = f.lane, seg = lane & ~(width - 1);
  int src = lane;
  switch (mode) {
    case ShflMode::idx: src = seg + (arg & (width - 1)); break;
    case ShflMode::up: src = (lane - seg) >= arg ? lane - arg : lane; break;
    case ShflMode::down: src = (lane - seg) + arg < width ? lane + arg : lane; break;
    case ShflMode::bfly: src = ((lane ^ arg) & ~(width - 1)) == seg ? (lane ^ arg) : lane; break;
  }
  if (!(mask >> src & 1u)) fail(where(f) + ": shfl reads lane " + std::to_string(src) + " outside the mask");
  const uint64_t r = lane_slot(f, src).bits;
  ++f.seq;
  return r;
}

void ldmatrix_x4(uint32_t (&r)[4], const void* row, bool trans) {
  Fiber& f = self_fiber();
  if ((reinterpret_cast<uintptr_t>(row) & 15) != 0 || !in_smem(row, 16))
    fail(where(f) + ": ldmatrix row address not a 16-byte aligned row inside dynamic shared memory");
  my_slot(f).ptr = row;
  warp_barrier(f, 0xffffffffu);
  const int l = f.lane;
  for (int i = 0; i < 4; ++i) {
    uint16_t lo, hi;
    if (!trans) {
      // Thread l holds row l/4, columns 2(l%4) and 2(l%4)+1 of matrix i.
      const auto* p = static_cast<const uint16_t*>(lane_slot(f, 8 * i + l / 4).ptr);
      lo = p[2 * (l % 4)];
      hi = p[2 * (l % 4) + 1];
    } else {
      // Transposed: thread l holds column l/4, rows 2(l%4) and 2(l%4)+1.
      const auto* p0 = static_cast<const uint16_t*>(lane_slot(f, 8 * i + 2 * (l % 4)).ptr);
      const auto* p1 = static_cast<const uint16_t*>(lane_slot(f, 8 * i + 2 * (l % 4) + 1).ptr);
      lo = p0[l / 4];
      hi = p1[l / 4];
    }
    r[i] = static_cast<uint32_t>(lo) | (static_cast<uint32_t>(hi) << 16);
  }
  ++f.seq;
}

namespace {
inline float bf16_lo(uint32_t w) { return __uint_as_float(w << 16); }
inline float bf16_hi(uint32_t w) { return __uint_as_float(w & 0xFFFF0000u); }
inline float bf16_half(uint32_t w, int h) { return h ? bf16_hi(w) : bf16_lo(w); }
}  // namespace

void mma_m16n8k16_bf16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  Fiber& f = self_fiber();
  Slot& s = my_slot(f);
  for (int i = 0; i < 4; ++i) s.w[i] = a[i];
  s.w[4] = b0;
  s.w[5] = b1;
  warp_barrier(f, 0xffffffffu);
  // Fragment layouts (PTX ISA, mma.m16n8k16 with .bf16): g = lane/4, t = lane%4.
  // A (16x16, row): a_i holds rows g (+8 for i = 1, 3), columns 2t, 2t+1 (+8 for i = 2, 3).
  // B (16x8, col): b_j holds rows (k) 2t, 2t+1 (+8 for j = 1), column (n) g.
  // C/D (16x8): d0, d1 row g, columns 2t, 2t+1; d2, d3 row g + 8.
  const int g4 = f.lane >> 2, t4 = f.lane & 3;
  float arow[2][16], bcol[2][16];
  for (int rr = 0; rr < 2; ++rr) {
    const int row = g4 + 8 * rr;
    for (int k = 0; k < 16; ++k) {
      const int owner = (row % 8) * 4 + (k % 8) / 2;
      const int reg = (row >= 8 ? 1 : 0) + (k >= 8 ? 2 : 0);
      arow[rr][k] = bf16_half(lane_slot(f, owner).w[reg], k & 1);
    }
  }
  for (int cc = 0; cc < 2; ++cc) {
    const int col = 2 * t4 + cc;
    for (int k = 0; k < 16; ++k) {
      const int owner = col * 4 + (k % 8) / 2;
      bcol[cc][k] = bf16_half(lane_slot(f, owner).w[4 + (k >= 8 ? 1 : 0)], k & 1);
    }
  }
  for (int e = 0; e < 4; ++e) {
    const int rr = e >> 1, cc = e & 1;
    float acc = d[e];
    for (int k = 0; k < 16; ++k) acc += arow[rr][k] * bcol[cc][k];  // bf16 x bf16 is exact in fp32
    d[e] = acc;
  }
  ++f.seq;
}

void cp_async16(void* dst, const void* src, int src_bytes) {
  Fiber& f = self_fiber();
  if ((reinterpret_cast<uintptr_t>(dst) & 15) || (reinterpret_cast<uintptr_t>(src) & 15) || !in_smem(dst, 16) ||
      src_bytes < 0 || src_bytes > 16)
    fail(where(f) + ": cp.async needs 16-byte aligned addresses, a shared destination and src_bytes in [0, 16]");
  // In flight until its wait: readers of the destination before then (a missing wait, or a
  // missing __syncthreads before the buffer is refilled) see NaN / 0xFF bytes.
  std::memset(dst, 0xFF, 16);
  f.copies.push_back({dst, src, src_bytes, -1});
}

void cp_async_commit() {
  Fiber& f = self_fiber();
  for (auto& c : f.copies)
    if (c.group < 0) c.group = f.committed;
  ++f.committed;
}

void cp_async_wait(int n) {
  Fiber& f = self_fiber();
  const long done_below = f.committed - n;  // groups [0, committed - n) must be complete
  std::vector<PendingCopy> keep;
  for (auto& c : f.copies) {
    if (c.group >= 0 && c.group < done_below) {
      if (c.bytes) std::memcpy(c.dst, c.src, c.bytes);
      std::memset(static_cast<char*>(c.dst) + c.bytes, 0, 16 - c.bytes);
    } else {
      keep.push_back(c);
    }
  }
  f.copies.swap(keep);
}

// ---------------------------------------------------------------- launches

void run_launch(const LaunchConfig& cfg, void (*body)(void*), void* arg) {
  const dim3 gr = cfg.grid, bl = cfg.block;
  const uint64_t nthreads = static_cast<uint64_t>(bl.x) * bl.y * bl.z;
  std::string bad = internal::check_launch(cfg);
  if (bad.empty() && g.cur != nullptr) bad = "a launch from inside a kernel (dynamic parallelism) is not emulated";
  if (!bad.empty()) {
    internal::set_launch_error(cudaErrorInvalidConfiguration, bad);
    return;
  }
  ensure_fibers(nthreads);
  g.body = body;
  g.body_arg = arg;
  g.error.clear();
  g.smem_bytes = cfg.smem;
  g.smem_store.assign(cfg.smem + 128, 0);
  g.smem = cfg.smem ? g.smem_store.data() + (128 - reinterpret_cast<uintptr_t>(g.smem_store.data()) % 128) % 128 : nullptr;
  g.rng.seed(internal::seed() + 7919 * g.launches);
  const bool reverse = (g.launches++ & 1) != 0;  // block order alternates launch to launch
  const uint64_t nblocks = static_cast<uint64_t>(gr.x) * gr.y * gr.z;
  g_coords.block_dim = bl;
  g_coords.grid_dim = gr;
  for (uint64_t n = 0; n < nblocks; ++n) {
    const uint64_t b = reverse ? nblocks - 1 - n : n;
    g_coords.block_idx = uint3{static_cast<unsigned>(b % gr.x), static_cast<unsigned>((b / gr.x) % gr.y),
                               static_cast<unsigned>(b / (static_cast<uint64_t>(gr.x) * gr.y))};
    if (!run_block(static_cast<int>(nthreads), bl)) {
      internal::set_launch_error(cudaErrorLaunchFailure, g.error);
      break;
    }
  }
  g.smem = nullptr;
  g.smem_bytes = 0;
}

}  // namespace emu
