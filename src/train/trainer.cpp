// The training loop. One optimizer step = grad_accum micro-batches whose token targets are fetched
// up front, so the loss is the exact mean over every valid target of the global batch (document
// mode pads rows, so counts vary); then the finite check, global-norm clipping, each optimizer
// group's update with its own scheduled lr, metrics, and the periodic eval / sample / checkpoint. A
// checkpoint holds everything the next step depends on (weights, optimizer state, loader position,
// sampling RNG, the non-finite step counters), which is why a resumed run reproduces an
// uninterrupted one bit for bit.
#include "llmtrain/trainer.h"

#include <omp.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cmath>
#include <filesystem>

#include "llmtrain/backend.h"
#include "llmtrain/comm.h"
#include "llmtrain/data.h"
#include "llmtrain/error.h"
#include "llmtrain/eval.h"
#include "llmtrain/hf.h"
#include "llmtrain/metrics.h"
#include "llmtrain/model.h"
#include "llmtrain/shard.h"
#include "llmtrain/tokenizer.h"
#include "train/grad_reducer.h"
#include "train/zero.h"
#include "train/checkpoint_io.h"
#include "train/fault.h"
#include "util/util.h"
#include "train/run_lock.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace llmtrain {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

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

LoaderOptions loader_options(const RunConfig& cfg, int rank, int world) {
  LoaderOptions lo;
  lo.files = resolve_shards(cfg.data.train, "data.train");
  lo.mode = cfg.data.mode;
  lo.B = cfg.data.micro_batch;
  lo.T = cfg.data.seq_len;
  lo.seed = cfg.run.seed;
  lo.shuffle = cfg.data.shuffle;
  lo.rank = rank;
  lo.world = world;
  lo.delimiter = cfg.data.delimiter;
  lo.vocab_limit = cfg.model.vocab_size;
  return lo;
}

// The first tensor of the model layout with a NaN or infinity in `host` ("" if none).
std::string first_nonfinite_tensor(const Model& model, const std::vector<float>& host) {
  for (const auto& p : model.layout().params())
    if (first_nonfinite(host.data() + p.offset, p.numel) >= 0) return p.name;
  return "";
}

}  // namespace

int grad_accum_steps(const RunConfig& cfg, int world) {
  const int64_t micro_tokens = (int64_t)cfg.data.micro_batch * cfg.data.seq_len * world;
  const int64_t batch_tokens = cfg.data.batch_tokens > 0 ? cfg.data.batch_tokens : micro_tokens;
  if (batch_tokens % micro_tokens != 0)
    throw InputError(cfg.source + ": data.batch_tokens: " + std::to_string(batch_tokens) +
                     " is not a multiple of micro_batch * seq_len * world = " + std::to_string(micro_tokens));
  return (int)(batch_tokens / micro_tokens);
}

std::string check_run_inputs(const RunConfig& cfg, int world) {
  const int accum = grad_accum_steps(cfg, world);
  auto check = [&](const std::string& pattern, const char* key) {
    uint64_t tokens = 0;
    const auto files = resolve_shards(pattern, key);
    for (const auto& f : files) tokens += read_shard_header(f).num_tokens;
    return std::to_string(files.size()) + " " + key + " shard(s), " + std::to_string(tokens) + " tokens";
  };
  std::string s = check(cfg.data.train, "data.train");
  if (!cfg.data.val.empty()) s += "; " + check(cfg.data.val, "data.val");
  const int64_t micro = (int64_t)cfg.data.micro_batch * cfg.data.seq_len;
  return s + "; global batch " + std::to_string(micro * world * accum) + " tokens = " + std::to_string(world) +
         " rank(s) x " + std::to_string(accum) + " micro-step(s) x " + std::to_string(cfg.data.micro_batch) + "x" +
         std::to_string(cfg.data.seq_len);
}

// ---------------------------------------------------------------- set-up

Trainer::Trainer(const RunConfig& cfg, const TrainOptions& opts)
    : cfg_(cfg), opts_(opts), ckpt_(cfg.run.dir, cfg.run.keep_last), sample_rng_(mix_seed(cfg.run.seed, 77)) {
  if (!opts.resume.empty() && opts.overwrite)
    throw InputError("--resume and --overwrite exclude each other: continue the run in " + cfg.run.dir +
                     " or start it over, not both");
  if (cfg.run.threads > 0) omp_set_num_threads(cfg.run.threads);
  B_ = cfg.data.micro_batch;
  T_ = cfg.data.seq_len;
  total_steps_ = cfg.run.steps;
  // Data parallelism: every rank holds the full model and optimizer (with run.zero=1 only its shard
  // of the optimizer state), reads its own slice of each global batch, and sums gradients before
  // clipping, so the update is the same on every rank.
  DistEnv env = dist_env_from_environment();
  // Rank 0 owns the run directory; it locks it before anything (the rendezvous included) so that a
  // second trainer stops at once, before it can touch the directory.
  fs::create_directories(cfg.run.dir);
  if (env.rank == 0) lock_ = std::make_unique<RunLock>(cfg.run.dir);
  comm_ = make_communicator(cfg.run.backend == "cuda" ? "nccl" : "gloo", env);
  world_ = comm_->world();
  rank_ = comm_->rank();
  main_rank_ = rank_ == 0;
  grad_accum_ = grad_accum_steps(cfg, world_);
  batch_tokens_ = (int64_t)grad_accum_ * B_ * T_ * world_;

  spdlog::info("llmtrain {} | config {} | run dir {} | rank {}/{} ({})", LLMTRAIN_VERSION, cfg.source, cfg.run.dir,
               rank_, world_, comm_->name());
  if (!main_rank_) spdlog::set_level(spdlog::level::warn);  // one voice: rank 0 reports
  if (main_rank_) std::printf("resolved config:\n%s\n", cfg.resolved.dump(2).c_str());
  std::fflush(stdout);

  model_ = std::make_unique<Model>(cfg.model);
  backend_ = make_backend(cfg.run.backend, *model_, B_, T_, backend_options(cfg));
  std::vector<float> host(model_->num_params());
  init_run_params(cfg, *model_, host.data());  // seeded init, or model.init_from
  backend_->upload_params(host.data());
  spdlog::info(
      "model {} | {} layers, C={}, heads={}/{} | {:.2f}M parameters ({:.2f}M without vocab padding) | backend {}",
      cfg.model.arch, cfg.model.n_layer, cfg.model.n_embd, cfg.model.n_head, cfg.model.kv_heads(),
      model_->num_params() / 1e6, model_->num_params_unpadded() / 1e6, backend_->name());

  build_optimizers();
  build_loaders();
  start_or_resume();

  spdlog::info("training {} steps | global batch {} tokens = {} ranks x {} micro-steps x {}x{} | {:.3f} GFLOP/token",
               total_steps_, batch_tokens_, world_, grad_accum_, B_, T_, model_->flops_per_token(T_) / 1e9);
  std::fflush(stdout);

  // Gradient sums in buckets started during the last micro-step's backward (run.grad_bucket_mb).
  comm_->set_producer_stream(backend_->stream_handle());
  reduce_ = comm_->name() != "single";  // world > 1, or a forced communicator (LLMTRAIN_FORCE_COMM)
  if (reduce_ && cfg.run.grad_bucket_mb > 0) {
    reducer_ = std::make_unique<dist::GradReducer>(*comm_, backend_->grads(), model_->num_params(),
                                                   (size_t)(cfg.run.grad_bucket_mb * 1024.0 * 1024.0));
    spdlog::info("gradient all-reduce: buckets of {:g} MiB, overlapped with backward", cfg.run.grad_bucket_mb);
  }
  inputs_.resize((size_t)grad_accum_ * B_ * T_);
  targets_.resize((size_t)grad_accum_ * B_ * T_);
}

Trainer::~Trainer() = default;

void Trainer::build_optimizers() {
  Schedule default_schedule = parse_schedule(cfg_.schedule, cfg_.source, "schedule");
  std::vector<GroupConfig> gcfgs = parse_optimizer_config(cfg_.optimizer, default_schedule, cfg_.source);
  std::vector<ParamRef> all;
  for (const auto& p : model_->layout().params())
    all.push_back(ParamRef{&p, backend_->params() + p.offset, backend_->grads() + p.offset});
  auto assigned = assign_groups(gcfgs, all);
  // ZeRO-1: each rank keeps optimizer state for (and updates) only its share of every group, then
  // the updated weights are all-gathered (src/train/zero.h).
  if (cfg_.run.zero == 1) {
    // The weight all-gather packs slices in the memory the weights live in (device memory on cuda).
    dist::BufferOps ops;
    Backend* be = backend_.get();
    ops.alloc = [be](size_t n) { return be->alloc_floats(n); };
    ops.copy = [be](float* dst, const float* src, size_t n) { be->copy_floats(dst, src, n); };
    zero_ = std::make_unique<dist::Zero1>(rank_, world_, std::move(ops));
  }
  for (size_t i = 0; i < gcfgs.size(); ++i) {
    if (assigned[i].empty()) continue;
    Group g;
    g.cfg = gcfgs[i];
    g.params = assigned[i];
    if (world_ > 1 && g.cfg.type == "newton_muon")
      throw InputError(cfg_.source + ": optimizer." + g.cfg.name +
                       ".type: newton_muon is single-process only for now (its input statistics are per rank)");
    g.local = zero_ ? zero_->shard_group(g.cfg.name, g.cfg.type, g.params) : g.params;
    // On the CUDA backend params/grads are device pointers: the device twin of each optimizer.
    g.opt = make_optimizer(g.cfg, g.local, mix_seed(cfg_.run.seed, 1000 + i), backend_->on_device());
    size_t n = 0;
    for (const auto& r : g.params) n += r.info->numel;
    spdlog::info("optimizer group {}: {} lr {:g} wd {:g} | {} tensors, {:.2f}M parameters", g.cfg.name, g.opt->type(),
                 g.cfg.lr, g.cfg.weight_decay, g.params.size(), n / 1e6);
    groups_.push_back(std::move(g));
  }
  if (zero_)
    spdlog::info("ZeRO-1: rank {} holds the optimizer state of {:.2f}M of {:.2f}M parameters (largest share {:.2f}M)",
                 rank_, zero_->owned(rank_) / 1e6, model_->num_params() / 1e6, zero_->max_owned() / 1e6);
}

void Trainer::build_loaders() {
  LoaderOptions lo = loader_options(cfg_, rank_, world_);
  train_loader_ = std::make_unique<DataLoader>(lo);
  if (!cfg_.data.val.empty()) {
    LoaderOptions vo = lo;
    vo.files = resolve_shards(cfg_.data.val, "data.val");
    vo.shuffle = false;
    val_loader_ = std::make_unique<DataLoader>(vo);
  }
  try {
    tok_ = load_tokenizer(cfg_.data.tokenizer);
  } catch (const std::exception& e) {
    spdlog::warn("no tokenizer for samples ({}); samples print token ids", e.what());
  }
}

void Trainer::start_or_resume() {
  const std::string& dir = cfg_.run.dir;
  std::optional<std::string> resume_dir;
  std::vector<std::string> skipped;
  if (!opts_.resume.empty()) resume_dir = resolve_resume(opts_.resume, dir, &skipped);
  for (const auto& s : skipped) spdlog::warn("resume: skipping a damaged checkpoint: {}", s);
  if (opts_.resume.empty() && !opts_.overwrite && ckpt_.has_checkpoints())
    throw InputError(dir + ": run directory already has checkpoints; pass --resume auto to continue or "
                     "--overwrite to start over");
  if (opts_.overwrite && main_rank_) {
    // Nothing of the previous run may be resumed or pruned against: its checkpoints (and
    // `latest`) and metrics go before the first step.
    std::error_code ec;
    const bool had = fs::exists(ckpt_.ckpt_dir(), ec) || fs::exists(fs::path(dir) / "metrics.jsonl", ec);
    fs::remove_all(ckpt_.ckpt_dir(), ec);
    if (ec)
      throw RuntimeError(ckpt_.ckpt_dir() + ": --overwrite cannot remove the previous checkpoints: " + ec.message());
    fs::remove(fs::path(dir) / "metrics.jsonl", ec);
    if (ec) throw RuntimeError(dir + "/metrics.jsonl: --overwrite cannot remove it: " + ec.message());
    if (had) spdlog::info("--overwrite: removed the previous run's checkpoints and metrics from {}", dir);
  }
  if (resume_dir) {
    std::vector<OptimizerView> views;
    for (auto& g : groups_) views.push_back({g.cfg.name, g.opt.get()});
    const std::string state_path = (fs::path(*resume_dir) / "state.json").string();
    TrainState st = load_checkpoint(*resume_dir, *model_, *backend_, views, cfg_, rank_, world_);
    try {
      train_loader_->load_state(st.loader);
    } catch (const InputError& e) {
      throw InputError(state_path + ": " + e.what());
    }
    step_ = st.step;
    sample_rng_.set_state(st.sample_rng);
    nonfinite_skipped_ = st.nonfinite_skipped;
    nonfinite_in_a_row_ = st.nonfinite_in_a_row;
    spdlog::info("resumed from {} at step {}", *resume_dir, step_);
  }
  if (main_rank_) {
    metrics_ = std::make_unique<MetricsWriter>(dir, resume_dir ? std::optional<int64_t>(step_) : std::nullopt);
    write_file_atomic((fs::path(dir) / "config.json").string(), cfg_.resolved.dump(2) + "\n");
  }
}

// ---------------------------------------------------------------- one step

StepResult Trainer::train_step() {
  const auto t0 = Clock::now();
  StepResult r;
  r.step = step_ + 1;
  for (int m = 0; m < grad_accum_; ++m)
    train_loader_->next_batch(inputs_.data() + (size_t)m * B_ * T_, targets_.data() + (size_t)m * B_ * T_);
  // The loss is the mean over every valid target of the GLOBAL batch, so each rank scales its
  // gradients by 1/(global valid count) and the all-reduce is a plain sum.
  double valid_d = 0;
  for (int32_t t : targets_) valid_d += t >= 0;
  comm_->all_reduce_sum(&valid_d, 1);
  r.tokens = (int64_t)valid_d;
  if (r.tokens == 0) throw RuntimeError("a global batch has no valid target tokens");
  const float dloss = 1.0f / (float)r.tokens;

  backend_->begin_step(r.step);
  backend_->zero_grad();
  double loss_sum = 0;
  for (int m = 0; m < grad_accum_; ++m) {
    int64_t valid = 0;
    loss_sum +=
        backend_->forward(inputs_.data() + (size_t)m * B_ * T_, targets_.data() + (size_t)m * B_ * T_, B_, T_, &valid);
    const bool last_micro = m == grad_accum_ - 1;
    if (reducer_ && last_micro) {
      reducer_->begin();
      backend_->set_grad_ready([this](size_t offset, size_t count) { reducer_->ready(offset, count); });
    }
    backend_->backward(dloss);
    if (reducer_ && last_micro) backend_->set_grad_ready(nullptr);
  }
  if (reduce_) {
    if (reducer_)
      reducer_->finish();
    else
      comm_->all_reduce_sum(backend_->grads(), model_->num_params());
    comm_->all_reduce_sum(&loss_sum, 1);
  }
  r.loss = loss_sum / (double)r.tokens;
  r.grad_norm = std::sqrt(backend_->grad_sq_norm());
  for (auto& g : groups_) r.lr.emplace_back(g.cfg.name, schedule_lr(g.cfg.schedule, g.cfg.lr, step_, total_steps_));

  // Loss and norm are global (summed over ranks), so every rank takes the same branch.
  if (!std::isfinite(r.loss) || !std::isfinite(r.grad_norm)) {
    nonfinite_step(r);
  } else {
    nonfinite_in_a_row_ = 0;
    if (cfg_.run.grad_clip > 0 && r.grad_norm > cfg_.run.grad_clip)
      backend_->scale_grads((float)(cfg_.run.grad_clip / r.grad_norm));
    const auto to = Clock::now();
    // Activations of the last micro-batch are still held by the backend for optimizers that want them.
    const InputSource inputs = [this](const ParamInfo& info, int64_t* rows) {
      return backend_->matrix_input(model_->layout().index_of(info.name), rows);
    };
    for (auto& g : groups_) g.opt->before_step(g.local, inputs, r.step);
    for (size_t i = 0; i < groups_.size(); ++i) groups_[i].opt->step(groups_[i].local, r.lr[i].second, r.step);
    if (zero_) zero_->all_gather_weights(*comm_);
    r.optim_s = seconds_since(to);
  }
  step_ = r.step;
  r.step_s = seconds_since(t0);
  return r;
}

void Trainer::nonfinite_step(StepResult& r) {
  // Name what went non-finite first, in model order: a gradient, else a weight.
  std::vector<float> host(model_->num_params());
  backend_->download_grads(host.data());
  std::string what = first_nonfinite_tensor(*model_, host);
  if (!what.empty()) {
    what = "gradient of " + what;
  } else {
    backend_->download_params(host.data());
    what = first_nonfinite_tensor(*model_, host);
    what = what.empty() ? "no tensor (the loss alone)" : "weight " + what;
  }
  auto num = [](double v) {
    char b[32];
    std::snprintf(b, sizeof b, "%g", v);
    return std::isnan(v) ? std::string("nan") : std::string(b);
  };
  const bool loss_bad = !std::isfinite(r.loss), norm_bad = !std::isfinite(r.grad_norm);
  const std::string head =
      "step " + std::to_string(r.step) + ": non-finite " +
      (loss_bad && norm_bad ? "loss (" + num(r.loss) + ") and gradient norm (" + num(r.grad_norm) + ")"
       : loss_bad           ? "loss (" + num(r.loss) + "; gradient norm " + num(r.grad_norm) + ")"
                            : "gradient norm (" + num(r.grad_norm) + "; loss " + num(r.loss) + ")") +
      "; first non-finite tensor: " + what;
  if (cfg_.run.on_nonfinite == "stop")
    throw RuntimeError(head + "; stopping (run.on_nonfinite=stop; the last checkpoint holds finite weights)");
  if (nonfinite_in_a_row_ >= cfg_.run.max_nonfinite_skips)
    throw RuntimeError(head + "; the " + std::to_string(nonfinite_in_a_row_) +
                       " step(s) before it were skipped already (run.max_nonfinite_skips), stopping");
  ++nonfinite_skipped_;
  ++nonfinite_in_a_row_;
  r.skipped = true;
  spdlog::warn("{}; update skipped ({} in a row, {} in all)", head, nonfinite_in_a_row_, nonfinite_skipped_);
}

// ---------------------------------------------------------------- logging and hooks

json Trainer::record(const StepResult& r) {
  json lrs = json::object();
  for (const auto& [name, lr] : r.lr) lrs[name] = lr;
  json rec{{"step", r.step},
           {"loss", r.loss},
           {"lr", lrs},
           {"grad_norm", r.grad_norm},
           {"tokens", r.tokens},
           {"tokens_per_s", batch_tokens_ / r.step_s},
           {"step_ms", r.step_s * 1e3},
           {"optim_ms", r.optim_s * 1e3}};
  if (r.skipped) rec["skipped"] = true;
  if (nonfinite_skipped_ > 0) rec["nonfinite_skips"] = nonfinite_skipped_;
  // MFU only where the backend knows a nominal peak (not the CPU); memory always.
  // Per device: each of the `world` ranks computed batch_tokens / world of the step's tokens.
  if (backend_->peak_flops() > 0)
    rec["mfu"] = mfu(model_->flops_per_token(T_), (double)batch_tokens_ / world_, r.step_s, backend_->peak_flops());
  rec["memory_bytes"] = backend_->memory_bytes();
  // Diagnostics read the step's gradients and momentum: only for a step that was applied.
  if (!r.skipped && cfg_.run.diagnostics_every > 0 && r.step % cfg_.run.diagnostics_every == 0) {
    json d = json::object();
    for (auto& g : groups_) {
      json gd = g.opt->diagnostics();
      if (!gd.is_null() && !gd.empty()) d[g.cfg.name] = gd;
    }
    if (!d.empty()) rec["diagnostics"] = d;
  }
  return rec;
}

void Trainer::print_progress(const StepResult& r, const json& rec, int64_t steps_this_run) {
  const bool last = step_ == total_steps_;
  if (!main_rank_ || !(step_ % cfg_.run.log_every == 0 || last || steps_this_run == 1 || r.skipped)) return;
  std::string lr_s;
  for (const auto& [name, lr] : r.lr) {
    char b[48];
    std::snprintf(b, sizeof b, "%s%s %.2e", lr_s.empty() ? "" : " ", name.c_str(), lr);
    lr_s += b;
  }
  char extra[64] = "";
  if (rec.contains("mfu")) std::snprintf(extra, sizeof extra, " | MFU %.1f%%", 100.0 * rec["mfu"].get<double>());
  std::printf(
      "step %6lld/%lld | loss %.4f | lr %s | norm %.3f%s | %.0f tok/s%s | mem %.2f GiB | %.0f ms (optim %.1f ms)"
      " | ETA %s\n",
      (long long)step_, (long long)total_steps_, r.loss, lr_s.c_str(), r.grad_norm, r.skipped ? " | SKIPPED" : "",
      batch_tokens_ / r.step_s, extra, backend_->memory_bytes() / 1073741824.0, r.step_s * 1e3, r.optim_s * 1e3,
      format_duration(ema_step_s_ * (total_steps_ - step_)).c_str());
  std::fflush(stdout);
}

void Trainer::evaluate(json& rec) {
  if (!val_loader_) return;
  EvalResult r = llmtrain::evaluate(*backend_, *val_loader_, cfg_.run.eval_batches, B_, T_);
  double red[2] = {r.loss_sum, (double)r.tokens};
  comm_->all_reduce_sum(red, 2);
  r.loss = red[1] > 0 ? red[0] / red[1] : 0.0;
  r.perplexity = std::exp(r.loss);
  rec["val_loss"] = r.loss;
  rec["val_ppl"] = r.perplexity;
  if (main_rank_) std::printf("step %6lld | val loss %.4f | val ppl %.2f\n", (long long)step_, r.loss, r.perplexity);
}

void Trainer::sample() {
  if (cfg_.run.sample_tokens <= 0 || !main_rank_) return;
  std::string text = sample_text(*backend_, tok_.get(), cfg_, sample_rng_);
  std::printf("step %6lld | sample: %s\n", (long long)step_, text.c_str());
}

void Trainer::save() {
  // The metrics lines up to this step are on disk before the checkpoint that covers them exists.
  if (metrics_) metrics_->sync();
  TrainState st;
  st.step = step_;
  st.loader = train_loader_->state();
  st.sample_rng = sample_rng_.state();
  st.nonfinite_skipped = nonfinite_skipped_;
  st.nonfinite_in_a_row = nonfinite_in_a_row_;
  std::vector<OptimizerView> views;
  for (auto& g : groups_) views.push_back({g.cfg.name, g.opt.get()});
  const auto t0 = Clock::now();
  std::string dir = save_checkpoint(ckpt_, st, *model_, *backend_, views, cfg_, *comm_);
  spdlog::info("checkpoint {} ({:.2f} s)", dir, seconds_since(t0));
}

// ---------------------------------------------------------------- the loop

int Trainer::fit() {
  const FaultPoint fault = fault_from_environment();
  const auto start = Clock::now();
  auto due = [&](int every) { return every > 0 && step_ % every == 0; };
  int64_t steps_this_run = 0;
  while (step_ < total_steps_ && !(opts_.stop_after >= 0 && steps_this_run >= opts_.stop_after)) {
    const StepResult r = train_step();
    ++steps_this_run;
    ema_step_s_ = steps_this_run == 1 ? r.step_s : 0.9 * ema_step_s_ + 0.1 * r.step_s;  // for the ETA
    json rec = record(r);
    const bool last = step_ == total_steps_;
    if (due(cfg_.run.eval_every) || last) evaluate(rec);
    if (metrics_) metrics_->write(rec);
    maybe_fault(fault, FaultPoint::after_step, step_, rank_);
    print_progress(r, rec, steps_this_run);
    if (due(cfg_.run.sample_every) || last) sample();
    if (due(cfg_.run.checkpoint_every) || last) save();
    std::fflush(stdout);
  }
  if (step_ < total_steps_) save();  // stopped early on request: leave a resumable checkpoint
  if (metrics_) metrics_->close();
  spdlog::info("done: {} steps in {}{}", steps_this_run, format_duration(seconds_since(start)),
               nonfinite_skipped_ ? " (" + std::to_string(nonfinite_skipped_) + " non-finite steps skipped)" : "");
  return 0;
}

int train(const RunConfig& cfg, const TrainOptions& opts) { return Trainer(cfg, opts).fit(); }

}  // namespace llmtrain
