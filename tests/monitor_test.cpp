// Early stopping against Keras' EarlyStopping(patience, min_delta) worked by
// hand (keras/callbacks.py: improvement is current - min_delta beating best in
// the monitor's direction; wait counts epochs since; stop at wait >= patience
// after the first epoch), and the plateau's cuts against ReduceLROnPlateau's
// rules (plateau_torch_test.py compares with torch itself); their states and
// the best weights through a checkpoint's /training and /best.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <vector>

#include "nn_dist/common/error.hpp"
#include "nn_dist/io/checkpoint.hpp"
#include "nn_dist/optim/monitor.hpp"
#include "nn_dist/optim/schedule.hpp"
#include "test_util.hpp"

namespace nn_dist {
namespace {

struct Stop {
  int64_t stopped = 0;  // the epoch the run stops after (0: it runs to the end)
  int64_t best_epoch = 0;
  double best = 0;
};

Stop run_early_stopping(bool maximize, long patience, double min_delta, const std::vector<double>& values) {
  EarlyStoppingState s = early_stopping_start(maximize);
  Stop out;
  for (std::size_t i = 0; i < values.size(); ++i) {
    const int64_t epoch = static_cast<int64_t>(i) + 1;
    early_stopping_step(maximize, min_delta, epoch, values[i], &s);
    if (early_stopping_done(s, patience, epoch)) {
      out.stopped = epoch;
      break;
    }
  }
  out.best_epoch = s.best_epoch;
  out.best = s.best;
  return out;
}

TEST(EarlyStoppingTest, StopsAfterPatienceEpochsWithoutImprovementAndKeepsTheBestEpoch) {
  // 1.0 and 0.9 improve; 0.95 and 0.91 do not: wait 2 after epoch 4.
  const Stop s = run_early_stopping(false, 2, 0, {1.0, 0.9, 0.95, 0.91, 0.8, 0.85});
  EXPECT_EQ(s.stopped, 4);
  EXPECT_EQ(s.best_epoch, 2);
  EXPECT_EQ(s.best, 0.9);
}

TEST(EarlyStoppingTest, AnImprovementMustBeatTheBestByMoreThanMinDelta) {
  // min_delta 0.05: 0.96 is not an improvement on 1.0, 0.94 is, 0.93 is not on 0.94.
  EarlyStoppingState s = early_stopping_start(false);
  EXPECT_TRUE(early_stopping_step(false, 0.05, 1, 1.0, &s));
  EXPECT_FALSE(early_stopping_step(false, 0.05, 2, 0.96, &s));
  EXPECT_EQ(s.wait, 1);
  EXPECT_TRUE(early_stopping_step(false, 0.05, 3, 0.94, &s));
  EXPECT_EQ(s.wait, 0);
  EXPECT_EQ(s.best_epoch, 3);
  EXPECT_FALSE(early_stopping_step(false, 0.05, 4, 0.93, &s));
  EXPECT_EQ(s.wait, 1);
  // Better by exactly min_delta is no improvement (binary-exact values).
  EarlyStoppingState e = early_stopping_start(false);
  early_stopping_step(false, 0.25, 1, 0.5, &e);
  EXPECT_FALSE(early_stopping_step(false, 0.25, 2, 0.25, &e));
  EXPECT_TRUE(early_stopping_step(false, 0.25, 3, 0.125, &e));
}

TEST(EarlyStoppingTest, AccuracyIsBetterWhenLargerAndAnEqualValueIsNoImprovement) {
  EXPECT_TRUE(monitor_maximizes(Monitor::kValAccuracy));
  EXPECT_FALSE(monitor_maximizes(Monitor::kValLoss));
  EXPECT_FALSE(monitor_maximizes(Monitor::kLoss));
  const Stop s = run_early_stopping(true, 2, 0, {0.5, 0.6, 0.6, 0.59, 0.7});
  EXPECT_EQ(s.stopped, 4);
  EXPECT_EQ(s.best_epoch, 2);
  EXPECT_EQ(s.best, 0.6);
}

TEST(EarlyStoppingTest, NeverStopsAfterTheFirstEpochAndPatienceZeroIsOff) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  // A first value that is no improvement (NaN) makes wait 1, but Keras never stops at the first epoch.
  EXPECT_EQ(run_early_stopping(false, 1, 0, {nan, nan}).stopped, 2);
  EXPECT_EQ(run_early_stopping(false, 0, 0, {1, 2, 3, 4, 5}).stopped, 0);
  EXPECT_EQ(run_early_stopping(false, 3, 0, {5, 4, 3, 2, 1}).stopped, 0);
}

TEST(EarlyStoppingTest, MonitorNamesRoundTripAndAnUnknownOneNamesTheFlag) {
  for (Monitor m : {Monitor::kValLoss, Monitor::kValAccuracy, Monitor::kLoss}) EXPECT_EQ(parse_monitor(monitor_name(m)), m);
  EXPECT_TRUE(testing::has(testing::error_of([] { parse_monitor("val_acc"); }),
                           "--monitor: unknown value 'val_acc' (expected val_loss, val_accuracy or loss)"));
}

TEST(PlateauTest, CutsAfterPatienceBadEpochsDownToMinLrAndWarmupScalesTheCutLr) {
  ScheduleOptions o;
  o.schedule = LrSchedule::kPlateau;
  o.plateau_patience = 1;
  o.plateau_factor = 0.5;
  o.plateau_min_lr = 0.02;
  PlateauState s = plateau_start(0.1, false);
  EXPECT_FALSE(plateau_step(o, false, 1.0, &s));  // the first value is the best
  EXPECT_FALSE(plateau_step(o, false, 1.0, &s));  // one bad epoch: not more than patience
  EXPECT_EQ(s.bad_epochs, 1);
  EXPECT_TRUE(plateau_step(o, false, 0.99995, &s));  // within the 1e-4 relative threshold: bad, so cut
  EXPECT_EQ(s.lr, 0.05);
  EXPECT_EQ(s.bad_epochs, 0);
  EXPECT_FALSE(plateau_step(o, false, 0.5, &s));  // better
  EXPECT_FALSE(plateau_step(o, false, 0.5, &s));
  EXPECT_TRUE(plateau_step(o, false, 0.5, &s));
  EXPECT_EQ(s.lr, 0.025);
  EXPECT_FALSE(plateau_step(o, false, 0.5, &s));
  EXPECT_TRUE(plateau_step(o, false, 0.5, &s));
  EXPECT_EQ(s.lr, 0.02);  // clamped at min_lr
  EXPECT_FALSE(plateau_step(o, false, 0.5, &s));
  EXPECT_FALSE(plateau_step(o, false, 0.5, &s));  // at min_lr: no further cut
  EXPECT_EQ(s.lr, 0.02);
  // The step's lr is the plateau's lr times the warmup (here half way through a 2-epoch warmup).
  o.warmup_epochs = 2;
  EXPECT_DOUBLE_EQ(lr_at(o, s.lr, 9, 10), 0.02 * 10.0 / 20.0);
  o.warmup_epochs = 0;
  EXPECT_EQ(lr_at(o, s.lr, 9, 10), 0.02);
}

TEST(PlateauTest, FlagsAreValidatedAndNamed) {
  ScheduleOptions o;
  o.schedule = LrSchedule::kPlateau;
  o.plateau_factor = 1;
  EXPECT_TRUE(testing::has(testing::error_of([&] { validate_schedule(o); }), "--plateau-factor"));
  o.plateau_factor = 0.1;
  o.plateau_patience = -1;
  EXPECT_TRUE(testing::has(testing::error_of([&] { validate_schedule(o); }), "--plateau-patience"));
  o.plateau_patience = 0;
  o.plateau_min_lr = -1;
  EXPECT_TRUE(testing::has(testing::error_of([&] { validate_schedule(o); }), "--plateau-min-lr"));
  EXPECT_EQ(parse_lr_schedule("plateau"), LrSchedule::kPlateau);
  EXPECT_TRUE(schedule_in_use(o));
}

TEST(EarlyStoppingTest, StatesAndBestWeightsRoundTripThroughACheckpointInfinitiesIncluded) {
  const testing::TempDir temp("ckpt_monitor");
  const std::string& dir = temp.str();
  const Layout layout({3, 4, 2});
  FlatBuffer params, best;
  testing::random_params(layout, 1, 1.0, params);
  testing::random_params(layout, 2, 1.0, best);
  Optimizer opt(OptimizerOptions{}, layout.total());
  TrainingState state;
  state.has_early_stopping = state.has_plateau = true;
  state.monitor = Monitor::kValAccuracy;
  state.early_stopping = early_stopping_start(true);  // -inf: saved mid-way through the first epoch
  state.plateau = PlateauState{0.0125, std::numeric_limits<double>::infinity(), 3};
  state.best_params = best.data();
  const std::string path = dir + "/ck.h5";
  write_checkpoint(path, layout, Activation::kRelu, Loss::kSoftmax, params.data(), opt, state);
  Optimizer opt2(OptimizerOptions{}, layout.total());
  const TrainingState back = read_checkpoint_state(path, "ck.h5", layout, opt2);
  EXPECT_TRUE(back.has_early_stopping);
  EXPECT_TRUE(back.has_plateau);
  EXPECT_EQ(back.monitor, Monitor::kValAccuracy);
  EXPECT_EQ(back.early_stopping.best, -std::numeric_limits<double>::infinity());
  EXPECT_EQ(back.early_stopping.best_epoch, 0);
  EXPECT_EQ(back.early_stopping.wait, 0);
  EXPECT_EQ(back.plateau.lr, 0.0125);
  EXPECT_EQ(back.plateau.best, std::numeric_limits<double>::infinity());
  EXPECT_EQ(back.plateau.bad_epochs, 3);
  FlatBuffer read(layout.total());
  ASSERT_TRUE(read_checkpoint_best(path, "ck.h5", layout, read.data()));
  EXPECT_EQ(read, best);
  // Without them: none of the attributes and no /best.
  const std::string plain = dir + "/plain.h5";
  write_checkpoint(plain, layout, Activation::kRelu, Loss::kSoftmax, params.data(), opt, TrainingState{});
  const TrainingState none = read_checkpoint_state(plain, "plain.h5", layout, opt2);
  EXPECT_FALSE(none.has_early_stopping || none.has_plateau);
  EXPECT_FALSE(read_checkpoint_best(plain, "plain.h5", layout, read.data()));
}

}  // namespace
}  // namespace nn_dist
