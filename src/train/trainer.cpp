// The training loop. One optimizer step = grad_accum micro-batches whose token targets are fetched
// up front, so the loss is the exact mean over every valid target of the global batch (document
// mode pads rows, so counts vary); then global-norm clipping, each optimizer group's update with
// its own scheduled lr, metrics, and the periodic eval / sample / checkpoint. A checkpoint holds
// everything the next step depends on (weights, optimizer state, loader position, sampling RNG),
// which is why a resumed run reproduces an uninterrupted one bit for bit.
#include "llmtrain/trainer.h"

#include <omp.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "llmtrain/backend.h"
#include "llmtrain/checkpoint.h"
#include "llmtrain/comm.h"
#include "llmtrain/data.h"
#include "llmtrain/error.h"
#include "llmtrain/eval.h"
#include "llmtrain/metrics.h"
#include "llmtrain/model.h"
#include "llmtrain/optim.h"
#include "llmtrain/rng.h"
#include "llmtrain/safetensors.h"
#include "llmtrain/tokenizer.h"
#include "train/grad_reducer.h"
#include "train/zero.h"
#include "train/checkpoint_io.h"
#include "train/fault.h"
#include "util/util.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace llmtrain {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

struct Group {
  GroupConfig cfg;
  std::vector<ParamRef> params;
  std::vector<ParamRef> local;  // what this rank's optimizer updates: params, or its ZeRO-1 share
  std::unique_ptr<Optimizer> opt;
};

std::string sample_text(Backend& backend, const Tokenizer* tok, const RunConfig& cfg, Rng& rng) {
  std::vector<int32_t> prompt;
  if (tok && !cfg.run.sample_prompt.empty()) prompt = tok->encode(cfg.run.sample_prompt);
  prompt.insert(prompt.begin(), cfg.data.delimiter);
  auto ids = sample_tokens(backend, prompt, cfg.run.sample_tokens, cfg.run.sample_temperature, cfg.data.seq_len, rng);
  if (!tok) {
    std::string s;
    for (int32_t id : ids) s += std::to_string(id) + " ";
    return s;
  }
  return cfg.run.sample_prompt + tok->decode(ids);
}

}  // namespace

int train(const RunConfig& cfg, const TrainOptions& opts) {
  if (cfg.run.threads > 0) omp_set_num_threads(cfg.run.threads);
  const int B = cfg.data.micro_batch, T = cfg.data.seq_len;
  // Data parallelism: every rank holds the full model and optimizer (with run.zero=1 only its shard
  // of the optimizer state), reads its own slice of each global batch, and sums gradients before
  // clipping, so the update is the same on every rank.
  DistEnv env = dist_env_from_environment();
  auto backend_kind = cfg.run.backend;
  std::unique_ptr<Communicator> comm = make_communicator(backend_kind == "cuda" ? "nccl" : "gloo", env);
  const int world = comm->world(), rank = comm->rank();
  const bool main_rank = rank == 0;
  const int64_t micro_tokens = (int64_t)B * T * world;
  const int64_t batch_tokens = cfg.data.batch_tokens > 0 ? cfg.data.batch_tokens : micro_tokens;
  if (batch_tokens % micro_tokens != 0)
    throw InputError(cfg.source + ": data.batch_tokens: " + std::to_string(batch_tokens) +
                     " is not a multiple of micro_batch * seq_len * world = " + std::to_string(micro_tokens));
  const int grad_accum = (int)(batch_tokens / micro_tokens);
  const int64_t total_steps = cfg.run.steps;

  fs::create_directories(cfg.run.dir);
  spdlog::info("llmtrain {} | config {} | run dir {} | rank {}/{} ({})", LLMTRAIN_VERSION, cfg.source, cfg.run.dir, rank,
               world, comm->name());
  if (!main_rank) spdlog::set_level(spdlog::level::warn);  // one voice: rank 0 reports
  if (main_rank) std::printf("resolved config:\n%s\n", cfg.resolved.dump(2).c_str());
  std::fflush(stdout);

  // ---- model, backend, parameters ----
  Model model(cfg.model);
  auto backend = make_backend(cfg.run.backend, model, B, T, backend_options(cfg));
  std::vector<float> host(model.num_params());
  model.init_params(host.data(), cfg.run.seed);
  backend->upload_params(host.data());
  spdlog::info("model {} | {} layers, C={}, heads={}/{} | {:.2f}M parameters ({:.2f}M without vocab padding) | backend {}",
               cfg.model.arch, cfg.model.n_layer, cfg.model.n_embd, cfg.model.n_head, cfg.model.kv_heads(),
               model.num_params() / 1e6, model.num_params_unpadded() / 1e6, backend->name());

  // ---- optimizer groups ----
  Schedule default_schedule = parse_schedule(cfg.schedule, cfg.source, "schedule");
  std::vector<GroupConfig> gcfgs = parse_optimizer_config(cfg.optimizer, default_schedule, cfg.source);
  std::vector<ParamRef> all;
  for (const auto& p : model.layout().params())
    all.push_back(ParamRef{&p, backend->params() + p.offset, backend->grads() + p.offset});
  auto assigned = assign_groups(gcfgs, all);
  // ZeRO-1: each rank keeps optimizer state for (and updates) only its share of every group, then
  // the updated weights are all-gathered (src/train/zero.h).
  std::unique_ptr<dist::Zero1> zero;
  if (cfg.run.zero == 1) {
    // The weight all-gather packs slices in the memory the weights live in (device memory on cuda).
    dist::BufferOps ops;
    Backend* be = backend.get();
    ops.alloc = [be](size_t n) { return be->alloc_floats(n); };
    ops.copy = [be](float* dst, const float* src, size_t n) { be->copy_floats(dst, src, n); };
    zero = std::make_unique<dist::Zero1>(rank, world, std::move(ops));
  }
  std::vector<Group> groups;
  for (size_t i = 0; i < gcfgs.size(); ++i) {
    if (assigned[i].empty()) continue;
    Group g;
    g.cfg = gcfgs[i];
    g.params = assigned[i];
    if (world > 1 && g.cfg.type == "newton_muon")
      throw InputError(cfg.source + ": optimizer." + g.cfg.name +
                       ".type: newton_muon is single-process only for now (its input statistics are per rank)");
    g.local = zero ? zero->shard_group(g.cfg.name, g.cfg.type, g.params) : g.params;
    // On the CUDA backend params/grads are device pointers: the device twin of each optimizer.
    g.opt = make_optimizer(g.cfg, g.local, mix_seed(cfg.run.seed, 1000 + i), backend->on_device());
    size_t n = 0;
    for (const auto& r : g.params) n += r.info->numel;
    spdlog::info("optimizer group {}: {} lr {:g} wd {:g} | {} tensors, {:.2f}M parameters", g.cfg.name, g.opt->type(),
                 g.cfg.lr, g.cfg.weight_decay, g.params.size(), n / 1e6);
    groups.push_back(std::move(g));
  }
  if (zero)
    spdlog::info("ZeRO-1: rank {} holds the optimizer state of {:.2f}M of {:.2f}M parameters (largest share {:.2f}M)",
                 rank, zero->owned(rank) / 1e6, model.num_params() / 1e6, zero->max_owned() / 1e6);

  // ---- data ----
  LoaderOptions lo;
  lo.files = resolve_shards(cfg.data.train, "data.train");
  lo.mode = cfg.data.mode;
  lo.B = B;
  lo.T = T;
  lo.seed = cfg.run.seed;
  lo.shuffle = cfg.data.shuffle;
  lo.rank = rank;
  lo.world = world;
  lo.delimiter = cfg.data.delimiter;
  lo.vocab_limit = cfg.model.vocab_size;
  DataLoader train_loader(lo);
  std::unique_ptr<DataLoader> val_loader;
  if (!cfg.data.val.empty()) {
    LoaderOptions vo = lo;
    vo.files = resolve_shards(cfg.data.val, "data.val");
    vo.shuffle = false;
    val_loader = std::make_unique<DataLoader>(vo);
  }
  std::unique_ptr<Tokenizer> tok;
  try {
    tok = load_tokenizer(cfg.data.tokenizer);
  } catch (const std::exception& e) {
    spdlog::warn("no tokenizer for samples ({}); samples print token ids", e.what());
  }

  // ---- resume ----
  CheckpointManager ckpt(cfg.run.dir, cfg.run.keep_last);
  Rng sample_rng(mix_seed(cfg.run.seed, 77));
  int64_t step = 0;
  std::optional<std::string> resume_dir;
  if (!opts.resume.empty()) resume_dir = resolve_resume(opts.resume, cfg.run.dir);
  if (!resume_dir && opts.resume.empty() && !opts.overwrite && ckpt.find_latest())
    throw InputError(cfg.run.dir + ": run directory already has checkpoints; pass --resume auto to continue or "
                     "--overwrite to start over");
  if (resume_dir) {
    TrainState st = load_checkpoint(*resume_dir, model, *backend, groups_view(groups), cfg, rank, world);
    step = st.step;
    train_loader.load_state(st.loader);
    sample_rng.set_state(st.sample_rng);
    spdlog::info("resumed from {} at step {}", *resume_dir, step);
  }
  std::unique_ptr<MetricsWriter> metrics;
  if (main_rank) {
    metrics = std::make_unique<MetricsWriter>(cfg.run.dir, resume_dir ? step : -1);
    std::ofstream(fs::path(cfg.run.dir) / "config.json") << cfg.resolved.dump(2) << "\n";
  }

  const FaultPoint fault = fault_from_environment();
  auto save = [&](int64_t at_step) {
    TrainState st;
    st.step = at_step;
    st.loader = train_loader.state();
    st.sample_rng = sample_rng.state();
    std::string dir = save_checkpoint(ckpt, st, model, *backend, groups_view(groups), cfg, *comm);
    spdlog::info("checkpoint {}", dir);
  };
  auto run_eval = [&](int64_t at_step, json& rec) {
    if (!val_loader) return;
    EvalResult r = evaluate(*backend, *val_loader, cfg.run.eval_batches, B, T);
    double red[2] = {r.loss_sum, (double)r.tokens};
    comm->all_reduce_sum(red, 2);
    r.loss = red[1] > 0 ? red[0] / red[1] : 0.0;
    r.perplexity = std::exp(r.loss);
    rec["val_loss"] = r.loss;
    rec["val_ppl"] = r.perplexity;
    if (main_rank) std::printf("step %6lld | val loss %.4f | val ppl %.2f\n", (long long)at_step, r.loss, r.perplexity);
  };
  auto run_sample = [&](int64_t at_step) {
    if (cfg.run.sample_tokens <= 0 || !main_rank) return;
    std::string text = sample_text(*backend, tok.get(), cfg, sample_rng);
    std::printf("step %6lld | sample: %s\n", (long long)at_step, text.c_str());
  };

  spdlog::info("training {} steps | global batch {} tokens = {} ranks x {} micro-steps x {}x{} | {:.3f} GFLOP/token",
               total_steps, batch_tokens, world, grad_accum, B, T, model.flops_per_token(T) / 1e9);
  std::fflush(stdout);

  // Gradient sums in buckets started during the last micro-step's backward (run.grad_bucket_mb).
  comm->set_producer_stream(backend->stream_handle());
  std::unique_ptr<dist::GradReducer> reducer;
  const bool reduce = comm->name() != "single";  // world > 1, or a forced communicator (LLMTRAIN_FORCE_COMM)
  if (reduce && cfg.run.grad_bucket_mb > 0) {
    reducer = std::make_unique<dist::GradReducer>(*comm, backend->grads(), model.num_params(),
                                                  (size_t)(cfg.run.grad_bucket_mb * 1024.0 * 1024.0));
    spdlog::info("gradient all-reduce: buckets of {:g} MiB, overlapped with backward", cfg.run.grad_bucket_mb);
  }

  std::vector<int32_t> inputs((size_t)grad_accum * B * T), targets((size_t)grad_accum * B * T);
  const auto run_start = Clock::now();
  int64_t steps_this_run = 0;
  double ema_step_s = 0;
  while (step < total_steps) {
    if (opts.stop_after >= 0 && steps_this_run >= opts.stop_after) break;
    const auto t0 = Clock::now();
    for (int m = 0; m < grad_accum; ++m)
      train_loader.next_batch(inputs.data() + (size_t)m * B * T, targets.data() + (size_t)m * B * T);
    // The loss is the mean over every valid target of the GLOBAL batch, so each rank scales its
    // gradients by 1/(global valid count) and the all-reduce is a plain sum.
    double valid_d = 0;
    for (size_t i = 0; i < targets.size(); ++i) valid_d += targets[i] >= 0;
    comm->all_reduce_sum(&valid_d, 1);
    const int64_t valid_total = (int64_t)valid_d;
    if (valid_total == 0) throw RuntimeError("a global batch has no valid target tokens");
    const float dloss = 1.0f / (float)valid_total;

    bool want_inputs = false;
    for (auto& g : groups) want_inputs |= g.opt->wants_inputs(step + 1);
    backend->begin_step(step + 1);
    backend->zero_grad();
    double loss_sum = 0;
    for (int m = 0; m < grad_accum; ++m) {
      int64_t valid = 0;
      loss_sum += backend->forward(inputs.data() + (size_t)m * B * T, targets.data() + (size_t)m * B * T, B, T, &valid);
      const bool last_micro = m == grad_accum - 1;
      if (reducer && last_micro) {
        reducer->begin();
        backend->set_grad_ready([&](size_t offset, size_t count) { reducer->ready(offset, count); });
      }
      backend->backward(dloss);
      if (reducer && last_micro) backend->set_grad_ready(nullptr);
    }
    if (want_inputs) {
      // Newton-Muon statistics from the last micro-batch's activations (still held by the backend).
      for (auto& g : groups) {
        if (!g.opt->wants_inputs(step + 1)) continue;
        for (const auto& r : g.params) {
          int64_t rows = 0;
          const float* z = backend->matrix_input(model.layout().index_of(r.info->name), &rows);
          if (z) g.opt->observe_inputs(*r.info, z, rows, r.info->cols());
        }
      }
    }
    if (reduce) {
      if (reducer)
        reducer->finish();
      else
        comm->all_reduce_sum(backend->grads(), model.num_params());
      comm->all_reduce_sum(&loss_sum, 1);
    }
    const double loss = loss_sum / (double)valid_total;
    if (!std::isfinite(loss)) throw RuntimeError("loss is " + std::to_string(loss) + " at step " + std::to_string(step + 1));
    const double grad_norm = std::sqrt(backend->grad_sq_norm());
    if (cfg.run.grad_clip > 0 && grad_norm > cfg.run.grad_clip) backend->scale_grads((float)(cfg.run.grad_clip / grad_norm));

    const auto to = Clock::now();
    json lrs = json::object();
    for (auto& g : groups) {
      float lr = schedule_lr(g.cfg.schedule, g.cfg.lr, step, total_steps);
      lrs[g.cfg.name] = lr;
      g.opt->step(g.local, lr, step + 1);
    }
    if (zero) zero->all_gather_weights(*comm);
    const double optim_s = seconds_since(to);
    ++step;
    ++steps_this_run;
    const double step_s = seconds_since(t0);
    ema_step_s = steps_this_run == 1 ? step_s : 0.9 * ema_step_s + 0.1 * step_s;

    json rec{{"step", step},
             {"loss", loss},
             {"lr", lrs},
             {"grad_norm", grad_norm},
             {"tokens", valid_total},
             {"tokens_per_s", batch_tokens / step_s},
             {"step_ms", step_s * 1e3},
             {"optim_ms", optim_s * 1e3}};
    // MFU only where the backend knows a nominal peak (not the CPU); memory always.
    // Per device: each of the `world` ranks computed batch_tokens / world of the step's tokens.
    const double step_mfu = mfu(model.flops_per_token(T), (double)batch_tokens / world, step_s, backend->peak_flops());
    if (backend->peak_flops() > 0) rec["mfu"] = step_mfu;
    rec["memory_bytes"] = backend->memory_bytes();
    if (cfg.run.diagnostics_every > 0 && step % cfg.run.diagnostics_every == 0) {
      json d = json::object();
      for (auto& g : groups) {
        json gd = g.opt->diagnostics();
        if (!gd.is_null() && !gd.empty()) d[g.cfg.name] = gd;
      }
      if (!d.empty()) rec["diagnostics"] = d;
    }
    const bool last = step == total_steps;
    if ((cfg.run.eval_every > 0 && step % cfg.run.eval_every == 0) || last) run_eval(step, rec);
    if (metrics) metrics->write(rec);
    maybe_fault(fault, FaultPoint::after_step, step, rank);

    if (main_rank && (step % cfg.run.log_every == 0 || last || steps_this_run == 1)) {
      std::string lr_s;
      for (auto& [k, v] : lrs.items()) {
        char b[48];
        std::snprintf(b, sizeof b, "%s%s %.2e", lr_s.empty() ? "" : " ", k.c_str(), v.get<double>());
        lr_s += b;
      }
      char extra[64] = "";
      if (backend->peak_flops() > 0) std::snprintf(extra, sizeof extra, " | MFU %.1f%%", 100.0 * step_mfu);
      std::printf("step %6lld/%lld | loss %.4f | lr %s | norm %.3f | %.0f tok/s%s | mem %.2f GiB | %.0f ms (optim %.1f ms) | ETA %s\n",
                  (long long)step, (long long)total_steps, loss, lr_s.c_str(), grad_norm, batch_tokens / step_s, extra,
                  backend->memory_bytes() / 1073741824.0, step_s * 1e3, optim_s * 1e3,
                  format_duration(ema_step_s * (total_steps - step)).c_str());
      std::fflush(stdout);
    }
    if ((cfg.run.sample_every > 0 && step % cfg.run.sample_every == 0) || last) run_sample(step);
    if ((cfg.run.checkpoint_every > 0 && step % cfg.run.checkpoint_every == 0) || last) save(step);
    std::fflush(stdout);
  }
  if (step < total_steps) save(step);  // stopped early on request: leave a resumable checkpoint
  spdlog::info("done: {} steps in {}", steps_this_run, format_duration(seconds_since(run_start)));
  return 0;
}

}  // namespace llmtrain
