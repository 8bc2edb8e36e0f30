// Building the model's buffers, giving every rank the same first parameters,
// and starting the gradient sum over them.
#include "nn_dist/train/model_state.hpp"

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

void start_gradient_sum(const Communicator& comm, const Config& config, ModelState* model) {
  watchdog::Wait wait("setting up the gradient sum");
  model->sync = GradientSync::create(comm, model->grad.data(), model->grad.size(), model->mlp->pieces(),
                                     static_cast<std::size_t>(config.bucket_mb * 1024 * 1024), config.overlap,
                                     config.allreduce, 1 + model->optimizer->state().size());
  // The gradient sum decides where the parameters and optimizer state live
  // (e.g. once per node in shared memory); training uses what it returns.
  model->params_data = model->sync->place(&model->params, model->optimizer.get(), model->mlp.get());
}

}  // namespace nn_dist
