// The learning-rate schedules against their closed forms: warmup ramp points
// (whole and fractional epochs), step boundaries, the cosine's start, midpoint
// and end, linear and sqrt scaling; the flags' validation; and that an SGD
// update moves the parameters by exactly lr(step) x gradient.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "nn_dist/common/error.hpp"
#include "nn_dist/optim/optimizer.hpp"
#include "nn_dist/optim/schedule.hpp"
#include "test_util.hpp"

namespace nn_dist {
namespace {

using testing::error_of;
using testing::has;

TEST(ScheduleTest, DefaultsGiveExactlyTheLrAtEveryStep) {
  const ScheduleOptions o;
  const double lr = 0.05;
  EXPECT_EQ(peak_lr(lr, o, 4096), lr);
  for (int64_t step : {0, 1, 6, 7, 1000, 123456789}) EXPECT_EQ(lr_at(o, lr, step, 7), lr) << step;
  EXPECT_FALSE(schedule_in_use(o));
}

TEST(ScheduleTest, ScalingIsLinearOrSqrtInTheGlobalBatch) {
  ScheduleOptions o;
  o.reference_batch = 256;
  o.scaling = LrScaling::kLinear;
  EXPECT_DOUBLE_EQ(peak_lr(0.1, o, 1024), 0.4);
  EXPECT_DOUBLE_EQ(peak_lr(0.1, o, 128), 0.05);
  EXPECT_DOUBLE_EQ(peak_lr(0.1, o, 256), 0.1);
  o.scaling = LrScaling::kSqrt;
  EXPECT_DOUBLE_EQ(peak_lr(0.1, o, 1024), 0.2);
  EXPECT_DOUBLE_EQ(peak_lr(0.1, o, 512), 0.1 * std::sqrt(2.0));
  EXPECT_DOUBLE_EQ(peak_lr(0.1, o, 64), 0.05);
  o.reference_batch = 100;
  EXPECT_DOUBLE_EQ(peak_lr(0.3, o, 900), 0.9);
  EXPECT_TRUE(schedule_in_use(o));
}

TEST(ScheduleTest, WarmupRampsLinearlyToThePeakStepByStep) {
  ScheduleOptions o;
  o.warmup_epochs = 2;
  const double peak = 0.8;
  const long spe = 10;  // 20 warmup steps: step k has peak * (k + 1) / 20
  EXPECT_DOUBLE_EQ(lr_at(o, peak, 0, spe), peak / 20);
  EXPECT_DOUBLE_EQ(lr_at(o, peak, 4, spe), peak * 5 / 20);
  EXPECT_DOUBLE_EQ(lr_at(o, peak, 9, spe), peak / 2);
  EXPECT_DOUBLE_EQ(lr_at(o, peak, 18, spe), peak * 19 / 20);
  EXPECT_EQ(lr_at(o, peak, 19, spe), peak);
  EXPECT_EQ(lr_at(o, peak, 20, spe), peak);
  EXPECT_EQ(lr_at(o, peak, 500, spe), peak);
  for (int64_t k = 1; k < 20; ++k) EXPECT_GT(lr_at(o, peak, k, spe), lr_at(o, peak, k - 1, spe)) << k;
}

TEST(ScheduleTest, FractionalWarmupEndsWithinTheFirstEpoch) {
  ScheduleOptions o;
  o.warmup_epochs = 0.5;
  const double peak = 0.35;
  const long spe = 7;  // 3.5 warmup steps
  EXPECT_DOUBLE_EQ(lr_at(o, peak, 0, spe), peak / 3.5);
  EXPECT_DOUBLE_EQ(lr_at(o, peak, 1, spe), peak * 2 / 3.5);
  EXPECT_DOUBLE_EQ(lr_at(o, peak, 2, spe), peak * 3 / 3.5);
  EXPECT_EQ(lr_at(o, peak, 3, spe), peak);
  EXPECT_EQ(lr_at(o, peak, 6, spe), peak);
}

TEST(ScheduleTest, StepDecaysAtTheFirstStepOfEachListedEpoch) {
  ScheduleOptions o;
  o.schedule = LrSchedule::kStep;
  o.decay_epochs = {3, 6, 8};
  o.decay_factor = 0.1;
  const double peak = 2.0;
  const long spe = 10;
  EXPECT_EQ(lr_at(o, peak, 0, spe), peak);
  EXPECT_EQ(lr_at(o, peak, 29, spe), peak);
  EXPECT_DOUBLE_EQ(lr_at(o, peak, 30, spe), 0.2);
  EXPECT_DOUBLE_EQ(lr_at(o, peak, 59, spe), 0.2);
  EXPECT_DOUBLE_EQ(lr_at(o, peak, 60, spe), 0.02);
  EXPECT_DOUBLE_EQ(lr_at(o, peak, 80, spe), 0.002);
  EXPECT_DOUBLE_EQ(lr_at(o, peak, 1000, spe), 0.002);
  // A fractional decay epoch: 1.5 epochs of 4 steps is step 6.
  o.decay_epochs = {1.5};
  o.decay_factor = 0.5;
  EXPECT_EQ(lr_at(o, peak, 5, 4), peak);
  EXPECT_DOUBLE_EQ(lr_at(o, peak, 6, 4), 1.0);
  // With warmup, the ramp comes first.
  o.decay_epochs = {3};
  o.warmup_epochs = 1;
  EXPECT_DOUBLE_EQ(lr_at(o, peak, 4, 10), peak / 2);
  EXPECT_EQ(lr_at(o, peak, 10, 10), peak);
  EXPECT_DOUBLE_EQ(lr_at(o, peak, 30, 10), 1.0);
}

TEST(ScheduleTest, CosineFallsFromThePeakToLrMinAtTheEnd) {
  ScheduleOptions o;
  o.schedule = LrSchedule::kCosine;
  o.epochs = 10;
  o.lr_min = 0.001;
  const double peak = 0.1;
  const long spe = 8;
  EXPECT_DOUBLE_EQ(lr_at(o, peak, 0, spe), peak);
  EXPECT_DOUBLE_EQ(lr_at(o, peak, 40, spe), (peak + o.lr_min) / 2);  // t = 5: the midpoint
  EXPECT_DOUBLE_EQ(lr_at(o, peak, 20, spe), o.lr_min + (peak - o.lr_min) * (1 + std::sqrt(0.5)) / 2);  // t = 2.5
  EXPECT_DOUBLE_EQ(lr_at(o, peak, 80, spe), o.lr_min);  // t = 10, the end of --epochs
  EXPECT_GT(lr_at(o, peak, 79, spe), o.lr_min);          // the last step taken
  EXPECT_LT(lr_at(o, peak, 79, spe), o.lr_min + 1e-4);
  EXPECT_DOUBLE_EQ(lr_at(o, peak, 200, spe), o.lr_min);  // beyond: stays at the end
  for (int64_t k = 1; k <= 80; ++k) EXPECT_LT(lr_at(o, peak, k, spe), lr_at(o, peak, k - 1, spe)) << k;
}

TEST(ScheduleTest, CosineAfterWarmupStartsAtThePeakAndHalvesHalfwayThroughTheRest) {
  ScheduleOptions o;
  o.schedule = LrSchedule::kCosine;
  o.epochs = 10;
  o.warmup_epochs = 2;
  const double peak = 0.4;  // lr_min 0
  const long spe = 5;
  EXPECT_DOUBLE_EQ(lr_at(o, peak, 0, spe), peak / 10);
  EXPECT_DOUBLE_EQ(lr_at(o, peak, 4, spe), peak / 2);
  EXPECT_EQ(lr_at(o, peak, 9, spe), peak);   // the ramp's last step
  EXPECT_EQ(lr_at(o, peak, 10, spe), peak);  // t = 2: the cosine starts
  EXPECT_DOUBLE_EQ(lr_at(o, peak, 30, spe), peak / 2);  // t = 6, halfway from 2 to 10
  EXPECT_NEAR(lr_at(o, peak, 50, spe), 0.0, 1e-17);     // t = 10
  // Fractional warmup: 0.5 epochs of 6 steps, then the cosine over 3.5 epochs.
  o.warmup_epochs = 0.5;
  o.epochs = 4;
  EXPECT_DOUBLE_EQ(lr_at(o, peak, 0, 6), peak / 3);
  EXPECT_DOUBLE_EQ(lr_at(o, peak, 1, 6), peak * 2 / 3);
  EXPECT_EQ(lr_at(o, peak, 2, 6), peak);
  EXPECT_EQ(lr_at(o, peak, 3, 6), peak);
  const double p = (13.0 / 6 - 0.5) / 3.5;  // step 13: t = 13/6
  EXPECT_DOUBLE_EQ(lr_at(o, peak, 13, 6), peak * (1 + std::cos(std::acos(-1.0) * p)) / 2);
}

TEST(ScheduleTest, NamesParseAndPrintBothWays) {
  for (const char* name : {"constant", "step", "cosine"}) EXPECT_EQ(lr_schedule_name(parse_lr_schedule(name)), name);
  for (const char* name : {"none", "linear", "sqrt"}) EXPECT_EQ(lr_scaling_name(parse_lr_scaling(name)), name);
  EXPECT_TRUE(has(error_of([] { parse_lr_schedule("exp"); }), "--lr-schedule: unknown value 'exp'"));
  EXPECT_TRUE(has(error_of([] { parse_lr_scaling("square"); }), "--lr-scaling: unknown value 'square'"));
  EXPECT_EQ(parse_decay_epochs("30,60,80"), (std::vector<double>{30, 60, 80}));
  EXPECT_EQ(parse_decay_epochs("0.5"), (std::vector<double>{0.5}));
  for (const char* bad : {"", "30,,60", "30,60,", "thirty", "30;60", "nan"}) {
    EXPECT_TRUE(has(error_of([&] { parse_decay_epochs(bad); }), "--lr-decay-epochs")) << bad;
  }
}

TEST(ScheduleTest, BadValuesAreOneErrorNamingTheFlag) {
  const auto error = [](auto edit) {
    ScheduleOptions o;
    edit(o);
    return error_of([&] { validate_schedule(o); });
  };
  EXPECT_EQ(error([](ScheduleOptions&) {}), "");
  EXPECT_TRUE(has(error([](ScheduleOptions& o) { o.warmup_epochs = -1; }), "--warmup-epochs"));
  EXPECT_TRUE(has(error([](ScheduleOptions& o) { o.warmup_epochs = NAN; }), "--warmup-epochs"));
  EXPECT_TRUE(has(error([](ScheduleOptions& o) { o.warmup_epochs = 10; }), "must be below --epochs 10"));
  EXPECT_TRUE(has(error([](ScheduleOptions& o) { o.schedule = LrSchedule::kStep; }), "needs --lr-decay-epochs"));
  EXPECT_TRUE(has(error([](ScheduleOptions& o) {
                    o.schedule = LrSchedule::kStep;
                    o.decay_epochs = {30, 60, 60};
                  }),
                  "must increase"));
  EXPECT_TRUE(has(error([](ScheduleOptions& o) {
                    o.schedule = LrSchedule::kStep;
                    o.decay_epochs = {60, 30};
                  }),
                  "--lr-decay-epochs 60,30"));
  EXPECT_TRUE(has(error([](ScheduleOptions& o) { o.decay_epochs = {0, 3}; }), "must be above 0"));
  EXPECT_TRUE(has(error([](ScheduleOptions& o) { o.decay_factor = 0; }), "--lr-decay-factor"));
  EXPECT_TRUE(has(error([](ScheduleOptions& o) { o.decay_factor = 1.5; }), "--lr-decay-factor"));
  EXPECT_TRUE(has(error([](ScheduleOptions& o) { o.lr_min = -0.1; }), "--lr-min"));
  EXPECT_TRUE(has(error([](ScheduleOptions& o) { o.reference_batch = 0; }), "--lr-reference-batch"));
  ScheduleOptions cosine;
  cosine.schedule = LrSchedule::kCosine;
  cosine.lr_min = 0.2;
  EXPECT_TRUE(has(error_of([&] { check_lr_min(cosine, 0.1); }), "--lr-min 0.2: is above the peak lr 0.1"));
  EXPECT_EQ(error_of([&] { check_lr_min(cosine, 0.4); }), "");
}

TEST(ScheduleTest, ChangesNameTheFlagsThatDiffer) {
  ScheduleOptions a;
  EXPECT_EQ(schedule_changes(a, 0.1, 0.1, a, 0.1, 0.1), "");
  ScheduleOptions b = a;
  b.schedule = LrSchedule::kCosine;
  b.warmup_epochs = 1;
  EXPECT_EQ(schedule_changes(a, 0.1, 0.1, b, 0.1, 0.1), "--lr-schedule constant -> cosine, --warmup-epochs 0 -> 1");
  ScheduleOptions c = b;
  c.epochs = 20;  // cosine depends on --epochs
  EXPECT_EQ(schedule_changes(b, 0.1, 0.1, c, 0.1, 0.1), "--epochs 10 -> 20");
  a.epochs = 20;  // constant does not
  EXPECT_EQ(schedule_changes(ScheduleOptions(), 0.1, 0.1, a, 0.1, 0.1), "");
  EXPECT_EQ(schedule_changes(a, 0.1, 0.4, a, 0.1, 0.2), "peak lr 0.4 -> 0.2");
}

// One SGD step (no momentum, no weight decay) at step k moves every parameter
// by exactly float(lr_at(k)) x gradient, as the update loop computes it.
TEST(ScheduleTest, OneSgdStepMovesTheParametersByLrTimesTheGradient) {
  ScheduleOptions o;
  o.schedule = LrSchedule::kCosine;
  o.epochs = 4;
  o.warmup_epochs = 0.5;
  o.scaling = LrScaling::kLinear;
  o.reference_batch = 8;
  const double peak = peak_lr(0.05, o, 32);
  ASSERT_DOUBLE_EQ(peak, 0.2);
  const long spe = 6;
  constexpr std::size_t kSize = 19;
  OptimizerOptions plain;
  Optimizer sgd(plain, kSize);
  FlatBuffer params(kSize), grad_sums(kSize);
  for (std::size_t i = 0; i < kSize; ++i) {
    params[i] = std::sin(0.4f * static_cast<float>(i));
    grad_sums[i] = 32 * std::cos(0.9f * static_cast<float>(i));
  }
  const float scale = 1.0f / 32;
  for (int64_t k = 0; k < 4 * spe; ++k) {
    const double lr = lr_at(o, peak, k, spe);
    const FlatBuffer before = params;
    sgd.set_lr(lr);
    sgd.update(params.data(), grad_sums.data(), scale, 0, kSize);
    sgd.finish_step();
    for (std::size_t i = 0; i < kSize; ++i) {
      EXPECT_EQ(params[i], before[i] - static_cast<float>(lr) * (grad_sums[i] * scale)) << "step " << k << " " << i;
    }
  }
}

}  // namespace
}  // namespace nn_dist
