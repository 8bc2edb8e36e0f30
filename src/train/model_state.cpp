// Building the model's buffers, giving every rank the same first parameters,
// and starting the gradient sum over them.
#include "nn_dist/train/model_state.hpp"

#include <cstdio>
#include <utility>
#include <vector>

#include "nn_dist/model/init.hpp"
#include "nn_dist/parallel/watchdog.hpp"
#include "nn_dist/train/model_plan.hpp"
#include "nn_dist/train/run_files.hpp"

namespace nn_dist {

ModelState allocate_model(const Communicator& comm, const Config& config, const TrainingSet& set,
                          ResumePoint* start) {
  comm.agreed([&] { require_model_memory(comm, config, set, start->sizes, start->activation.kind,
                                         !checkpoint_to_load(config).empty()); });
  ModelState model;
  model.mlp = std::make_unique<Mlp<float>>(Layout(start->sizes), start->activation, set.loss, model_batch(set));
  const std::size_t total = model.mlp->layout().total();
  if (!start->params.empty()) {
    model.params = std::move(start->params);
  } else {
    model.params.assign(total, 0.0f);
  }
  model.grad.assign(total, 0.0f);
  model.optimizer =
      start->optimizer ? std::move(start->optimizer) : std::make_unique<Optimizer>(config.optimizer, total);
  return model;
}

void share_initial_parameters(const Communicator& comm, bool drawn, Activation activation, uint64_t seed,
                              ModelState* model) {
  if (drawn && comm.root()) init_parameters(model->mlp->layout(), activation, seed, model->params.data());
  Optimizer& optimizer = *model->optimizer;
  comm.broadcast(model->params.data(), model->params.size());
  for (float* state : optimizer.state()) comm.broadcast(state, optimizer.size());
  int64_t step = optimizer.step();
  comm.broadcast(&step, 1);
  optimizer.set_step(step);
}

namespace {

// --precision bf16: forward() multiplies weights packed once a step by whoever
// updates them (Trainer::update). Where the sum did not place one copy of
// them in node-shared memory, each rank keeps its own.
void pack_own_weights(ModelState* model) {
  Mlp<float>& mlp = *model->mlp;
  if (mlp.packed_weight_elements() == 0 || mlp.packs_weights()) return;
  mlp.place_packed_weights(nullptr);
  mlp.pack_weights(model->params_data, 0, mlp.layout().total());
}

}  // namespace

void start_gradient_sum(const Communicator& comm, const Config& config, const TrainingSet& set,
                        ModelState* model) {
  watchdog::Wait wait("setting up the gradient sum");
  if (config.reproducible) {
    // One exponent per weight matrix and per bias vector (their scales differ).
    const Layout& layout = model->mlp->layout();
    std::vector<std::pair<std::size_t, std::size_t>> tensors;
    for (int l = 0; l < layout.num_layers(); ++l) {
      for (const TensorSlot& t : {layout.weight(l), layout.bias(l)}) tensors.emplace_back(t.offset, t.offset + t.size());
    }
    const int blocks = static_cast<int>(set.global_blocks / comm.size());
    // One copy of the parameters per node, each rank updating its part, as
    // the other shared-memory sums do; not with --clip-grad-norm, whose norm
    // then adds the ranks' parts in an order that depends on the rank count.
    const std::size_t shared = config.clip_grad_norm > 0 ? 0 : 1 + model->optimizer->state().size();
    model->sync = GradientSync::create_exact(comm, model->grad.data(), model->grad.size(), tensors, blocks,
                                             set.global_blocks, config.allreduce, &model->mlp->pieces(), shared);
    model->params_data = model->sync->place(&model->params, model->optimizer.get(), model->mlp.get());
    pack_own_weights(model);
    return;
  }
  model->sync = GradientSync::create(comm, model->grad.data(), model->grad.size(), model->mlp->pieces(),
                                     static_cast<std::size_t>(config.bucket_mb * 1024 * 1024), config.overlap,
                                     config.allreduce, 1 + model->optimizer->state().size());
  // The gradient sum decides where the parameters and optimizer state live
  // (e.g. once per node in shared memory); training uses what it returns.
  model->params_data = model->sync->place(&model->params, model->optimizer.get(), model->mlp.get());
  pack_own_weights(model);
}

void agree_gemm_kernel(const Communicator& comm, const Config& config) {
  if (config.gemm != GemmKernel::kAuto) return;  // forced: every rank has checked its CPU runs it
  const std::vector<GemmKernel> best_first = config.precision == Precision::kBf16
                                                 ? std::vector<GemmKernel>{GemmKernel::kAmx, GemmKernel::kAvx512Bf16}
                                                 : std::vector<GemmKernel>{GemmKernel::kAvx512, GemmKernel::kAvx2,
                                                                           GemmKernel::kEigen};
  const GemmKernel own = gemm_kernel();
  for (GemmKernel k : best_first) {
    if (comm.min(gemm_kernel_supported(k) ? 1L : 0L) == 0) continue;
    if (comm.min(own == k ? 1L : 0L) == 0 && comm.root()) {
      std::printf("note: --reproducible: the ranks' CPUs differ; every rank multiplies with the %s kernel, the "
                  "best they all run\n", gemm_kernel_name(k).c_str());
    }
    comm.agreed([&] { set_gemm_kernel(k, config.precision); });
    return;
  }
  comm.agree("--reproducible: the ranks' CPUs have no " + precision_name(config.precision) +
             " matrix kernel in common");
}

}  // namespace nn_dist
