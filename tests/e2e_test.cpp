// End-to-end tests of the real nn_dist and nn_datagen binaries under mpirun:
// every bad input ends with one clear line, exit code 2 on every rank, no hang
// and an untouched checkpoint; and good runs learn, read configs and write files.
#include <gtest/gtest.h>
#include <hdf5.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <numeric>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "e2e_util.hpp"
#include "nn_dist/io/checkpoint.hpp"
#include "nn_dist/io/checkpoint_dir.hpp"
#include "nn_dist/io/dataset.hpp"

namespace nn_dist::e2e {
namespace {

// ---- bad inputs: each case prepares its files and returns nn_dist's flags

struct BadCase {
  std::string name;
  // Makes the bad files in `dir` and returns the nn_dist arguments.
  std::function<std::vector<std::string>(const std::string& dir)> prepare;
  std::vector<std::string> expected;  // words the error line must contain
  bool also_three_ranks = false;
};

std::ostream& operator<<(std::ostream& os, const BadCase& c) { return os << c.name; }

// Good data and a small net, then `flags` (which may replace --hidden).
std::vector<std::string> with_good_data(std::vector<std::string> flags) {
  std::vector<std::string> args{"--data", shared().train, "--epochs", "1"};
  if (std::find(flags.begin(), flags.end(), "--hidden") == flags.end()) args.insert(args.end(), {"--hidden", "8"});
  args.insert(args.end(), flags.begin(), flags.end());
  return args;
}

// A flag error on good data.
BadCase flag_case(const std::string& name, std::vector<std::string> flags, std::vector<std::string> expected,
                  bool three = false) {
  return {name, [flags](const std::string&) { return with_good_data(flags); }, expected, three};
}

// Bad training data in file `file` made by `make`.
BadCase data_case(const std::string& name, const std::string& file, std::function<void(const std::string&)> make,
                  std::vector<std::string> expected, bool three = false, std::vector<std::string> extra = {}) {
  return {name,
          [file, make, extra](const std::string& dir) {
            const std::string p = dir + "/" + file;
            make(p);
            std::vector<std::string> args{"--data", p, "--epochs", "1", "--hidden", "8"};
            args.insert(args.end(), extra.begin(), extra.end());
            return args;
          },
          expected, three};
}

// A bad --val file next to good training data.
BadCase val_case(const std::string& name, std::function<void(const std::string&)> make,
                 std::vector<std::string> expected, bool three = false) {
  return {name,
          [make](const std::string& dir) {
            const std::string p = dir + "/bad_val.h5";
            make(p);
            return with_good_data({"--val", p});
          },
          expected, three};
}

// A 3-feature spirals set; the shared checkpoint was trained on 2 features.
std::string three_feature_data(const std::string& dir) {
  const std::string p = dir + "/three.h5";
  const RunResult gen = run_datagen(dir, {"--kind", "spirals", "--features", "3", "--samples", "100", "--out", p});
  EXPECT_EQ(gen.code, 0) << describe(gen);
  return p;
}

// Files that name their features and classes (see write_named): training
// data named ABC, x0 x1, and a second file named as given.
const std::vector<std::string> kClasses{"ant", "bee", "cat"}, kFeatures{"x0", "x1"};

BadCase names_case(const std::string& name, const std::string& flag, const std::vector<std::string>& features,
                   const std::vector<std::string>& classes, std::vector<std::string> expected) {
  return {name,
          [flag, features, classes](const std::string& dir) {
            const std::string train = dir + "/named.h5", other = dir + "/other.h5";
            write_named(train, 40, 2, kFeatures, kClasses);
            write_named(other, 40, 2, features, classes);
            return std::vector<std::string>{"--data", train, flag, other, "--epochs", "1", "--hidden", "8"};
          },
          expected, true};
}

// A checkpoint trained on named data, then --init/--resume it with data named otherwise.
BadCase checkpoint_names_case(const std::string& name, const std::string& flag,
                              const std::vector<std::string>& features, const std::vector<std::string>& classes,
                              std::vector<std::string> expected) {
  return {name,
          [flag, features, classes](const std::string& dir) {
            const std::string train = dir + "/named.h5", other = dir + "/other.h5", ck = dir + "/named_ck.h5";
            write_named(train, 40, 2, kFeatures, kClasses);
            write_named(other, 40, 2, features, classes);
            const RunResult fit = run_nn_dist(dir, 1, {"--data", train, "--hidden", "8", "--epochs", "1",
                                                       "--checkpoint", ck, "--quiet"});
            EXPECT_EQ(fit.code, 0) << describe(fit);
            return std::vector<std::string>{"--data", other, flag, ck, "--epochs", "2"};
          },
          expected, true};
}

std::vector<BadCase> bad_cases() {
  const auto nothing = [](const std::string&) {};
  std::vector<BadCase> cases = {
      data_case("MissingFile", "missing.h5", nothing, {"--data", "missing.h5", "not found"}, true),
      data_case("Directory", "a_dir", [](const std::string& p) { fs::create_directory(p); },
                {"--data", "a_dir", "directory"}),
      data_case("TextFile", "notes.h5", [](const std::string& p) { write_text(p, "epoch,loss\n1,0.5\n"); },
                {"--data", "notes.h5", "not an HDF5 file"}),
      data_case("TruncatedFile", "cut.h5",
                [](const std::string& p) {
                  write_labelled(p, 20000, 4);
                  fs::resize_file(p, fs::file_size(p) / 2);
                },
                {"--data", "cut.h5", "truncated"}, true),
      data_case("MissingX", "no_x.h5",
                [](const std::string& p) {
                  write_h5(p, [](hid_t f) { add_dataset(f, "y", {10}, H5T_STD_I64LE, labels(10, 3)); });
                },
                {"--data", "no_x.h5", "'X'"}),
      data_case("MissingY", "no_y.h5",
                [](const std::string& p) {
                  write_h5(p, [](hid_t f) { add_dataset(f, "X", {10, 2}, H5T_IEEE_F32LE, features(10, 2)); });
                },
                {"--data", "no_y.h5", "'y'"}),
      data_case("XOneDimensional", "x1d.h5",
                [](const std::string& p) {
                  write_h5(p, [](hid_t f) {
                    add_dataset(f, "X", {10}, H5T_IEEE_F32LE, features(10, 1));
                    add_dataset(f, "y", {10}, H5T_STD_I64LE, labels(10, 3));
                  });
                },
                {"--data", "x1d.h5", "'X'", "2-D"}),
      data_case("XThreeDimensional", "x3d.h5",
                [](const std::string& p) {
                  write_h5(p, [](hid_t f) {
                    add_dataset(f, "X", {10, 2, 2}, H5T_IEEE_F32LE, features(10, 4));
                    add_dataset(f, "y", {10}, H5T_STD_I64LE, labels(10, 3));
                  });
                },
                {"--data", "x3d.h5", "'X'", "2-D"}),
      data_case("XNotNumeric", "xstr.h5",
                [](const std::string& p) {
                  write_h5(p, [](hid_t f) {
                    add_string_dataset(f, "X", 10, 2);
                    add_dataset(f, "y", {10}, H5T_STD_I64LE, labels(10, 3));
                  });
                },
                {"--data", "xstr.h5", "'X'", "numeric"}),
      data_case("LengthsDiffer", "short_y.h5",
                [](const std::string& p) {
                  write_h5(p, [](hid_t f) {
                    add_dataset(f, "X", {10, 2}, H5T_IEEE_F32LE, features(10, 2));
                    add_dataset(f, "y", {9}, H5T_STD_I64LE, labels(9, 3));
                  });
                },
                {"--data", "short_y.h5", "10", "9"}, true),
      data_case("EmptyDataset", "empty.h5",
                [](const std::string& p) {
                  write_h5(p, [](hid_t f) {
                    add_dataset(f, "X", {0, 2}, H5T_IEEE_F32LE, {});
                    add_dataset(f, "y", {0}, H5T_STD_I64LE, {});
                  });
                },
                {"--data", "empty.h5", "empty"}),
      data_case("FewerSamplesThanRanks", "one.h5", [](const std::string& p) { write_labelled(p, 1, 2); },
                {"--data", "one.h5", "ranks"}, true),
      data_case("NegativeLabel", "neg.h5",
                [](const std::string& p) { write_labelled(p, 40, 2, [](auto&, auto& y) { y[5] = -1; }); },
                {"--data", "neg.h5", "label", "-1"}),
      data_case("FractionalLabelWithSoftmax", "half.h5",
                [](const std::string& p) {
                  std::vector<double> x = features(40, 2), y = labels(40, 3);
                  y[30] = 0.5;  // in the last rank's shard
                  write_h5(p, [&](hid_t f) {
                    add_dataset(f, "X", {40, 2}, H5T_IEEE_F32LE, x);
                    add_dataset(f, "y", {40}, H5T_IEEE_F32LE, y);
                  });
                },
                {"--data", "half.h5", "label", "0.5", "softmax"}, true, {"--loss", "softmax"}),
      data_case("NanInX", "nan.h5",
                [](const std::string& p) {
                  write_labelled(p, 40, 2, [](auto& x, auto&) { x[3 * 2 + 1] = std::nan(""); });
                },
                {"--data", "nan.h5", "'X'", "NaN"}),
      data_case("InfInLastRowOfX", "inf.h5",
                [](const std::string& p) {
                  write_labelled(p, 40, 2,
                                 [](auto& x, auto&) { x[39 * 2] = std::numeric_limits<double>::infinity(); });
                },
                {"--data", "inf.h5", "'X'", "Inf", "39"}, true),
      val_case("ValFeatureCountDiffers", [](const std::string& p) { write_labelled(p, 20, 3); },
               {"--val", "bad_val.h5", "features"}),
      val_case("ValLabelBeyondTrainingClasses",
               [](const std::string& p) { write_labelled(p, 20, 2, [](auto&, auto& y) { y[17] = 5; }); },
               {"--val", "bad_val.h5", "label 5", "class"}, true),
      // A list's line that starts with a byte-order mark (two lists joined by cat): the mark shown, not hidden.
      {"DataListNamesAFileWithAnInvisibleCharacter",
       [](const std::string& dir) {
         write_text(dir + "/list.txt", shared().train + "\n\xef\xbb\xbfmore.h5\n");
         return std::vector<std::string>{"--data", "@" + dir + "/list.txt", "--epochs", "1", "--hidden", "8"};
       },
       {"--data", "\\xef\\xbb\\xbfmore.h5", "not found"}},
      // 1e308 MiB is Inf bytes: it was reported as "--cache-mb inf: too small".
      flag_case("CacheMbBeyondAnyMemory", {"--cache-mb", "1e308"}, {"--cache-mb", "at most 1000000000", "1e+308"}),
      // Every feature x 1e39 overflows float: it was reported as divergence ("try a smaller --lr").
      flag_case("ScaleOverflowsFloat", {"--scale", "1e39"},
                {"feature", "beyond float's range", "step 1", "--scale 1e+39", "smaller --scale"}, true),
      flag_case("PrecisionUnknown", {"--precision", "fp16"}, {"--precision", "fp16", "f32 or bf16"}),
      flag_case("Bf16KernelWithoutBf16Precision", {"--gemm", "amx"}, {"--gemm amx", "bf16", "--precision bf16"}),
      flag_case("F32KernelWithBf16Precision", {"--gemm", "avx2", "--precision", "bf16"},
                {"--gemm avx2", "f32", "amx, avx512_bf16"}),
      flag_case("ReproducibleWithNoSum", {"--reproducible", "--allreduce", "none"},
                {"--allreduce none", "not with --reproducible"}),
      flag_case("ReproducibleWithValSplit", {"--reproducible", "--val-split", "0.1"},
                {"--val-split", "not with --reproducible", "--val"}),
      // Agreed once the rank count is known: 100 is no multiple of 8 x the ranks.
      flag_case("ReproducibleGlobalBatchNotAMultiple",
                {"--reproducible", "--global-batch-size", "100", "--block-size", "8"},
                {"--reproducible", "global batch 100", "--global-batch-size", "--block-size 8"}, true),
      flag_case("BlockSizeZero", {"--reproducible", "--block-size", "0"}, {"--block-size", "positive"}),
      flag_case("HiddenZero", {"--hidden", "0"}, {"--hidden", "positive"}),
      flag_case("HiddenNegative", {"--hidden", "-3"}, {"--hidden", "-3"}),
      flag_case("HiddenNotANumber", {"--hidden", "abc"}, {"--hidden", "abc"}, true),
      flag_case("HiddenEmptyItem", {"--hidden", "8,,4"}, {"--hidden 8,,4", "number"}),
      flag_case("DropoutOne", {"--dropout", "1"}, {"--dropout", "'1'", "[0, 1)"}),
      flag_case("DropoutNotANumber", {"--dropout", "0.2,half"}, {"--dropout", "'half'", "[0, 1)"}),
      // Checked against the model's hidden layers, once known: an agreed error.
      flag_case("DropoutRatesDoNotFitTheLayers", {"--hidden", "8", "--dropout", "0.1,0.2"},
                {"--dropout", "2 rates for 1 hidden layer"}, true),
      flag_case("DropoutWithStreaming", {"--dropout", "0.5", "--cache-mb", "1"}, {"--dropout 0.5", "--cache-mb"}, true),
      flag_case("ClipGradNormNegative", {"--clip-grad-norm", "-1"}, {"--clip-grad-norm", "not below 0", "-1"}),
      flag_case("LrZero", {"--lr", "0"}, {"--lr", "positive"}),
      flag_case("LrNegative", {"--lr", "-1"}, {"--lr", "positive"}),
      flag_case("BatchSizeZero", {"--batch-size", "0"}, {"--batch-size", "positive"}),
      flag_case("AccumulateStepsZero", {"--accumulate-steps", "0"}, {"--accumulate-steps", "positive", "0"}),
      flag_case("AccumulateStepsNotAnInteger", {"--accumulate-steps", "2.5"},
                {"--accumulate-steps", "'2.5'", "invalid"}),
      // Agreed once the rank count is known: every rank's micro-batches are of one size.
      flag_case("GlobalBatchNotAMultipleOfTheMicroBatches", {"--global-batch-size", "50", "--accumulate-steps", "4"},
                {"--global-batch-size 50", "multiple of --accumulate-steps 4 x"}, true),
      flag_case("ReproducibleMicroBatchNotWholeBlocks",
                {"--reproducible", "--batch-size", "12", "--block-size", "8", "--accumulate-steps", "2"},
                {"--reproducible", "--accumulate-steps x --batch-size x ranks",
                 "multiple of --accumulate-steps 2 x --block-size 8"}, true),
      {"EpochsZero",
       [](const std::string&) { return std::vector<std::string>{"--data", shared().train, "--epochs", "0"}; },
       {"--epochs", "positive"}},
      flag_case("UnknownOption", {"--frobnicate"}, {"--frobnicate"}, true),
      flag_case("UnknownActivation", {"--activation", "swish"}, {"--activation", "swish"}),
      // --leaky-slope changes only leaky_relu: with another activation it is refused, not ignored.
      flag_case("LeakySlopeWithAnotherActivation", {"--activation", "gelu", "--leaky-slope", "0.1"},
                {"--leaky-slope", "only used with activation leaky_relu", "--activation gelu"}),
      flag_case("LeakySlopeWithTheDefaultActivation", {"--leaky-slope", "0.1"},
                {"--leaky-slope", "only used with activation leaky_relu", "--activation relu"}, true),
      flag_case("LeakySlopeNotPositive", {"--activation", "leaky_relu", "--leaky-slope", "0"},
                {"--leaky-slope", "positive", "0"}),
      flag_case("UnknownLoss", {"--loss", "hinge"}, {"--loss", "hinge"}),
      flag_case("UnknownOptimizer", {"--optimizer", "rmsprop"}, {"--optimizer", "rmsprop"}),
      flag_case("UnknownOverlap", {"--overlap", "maybe"}, {"--overlap", "maybe"}),
      flag_case("UnknownAllreduce", {"--allreduce", "fast"}, {"--allreduce", "fast"}),
      // nn_dist's own ring sum was retired: the line names the flag, the replacement and the evidence.
      flag_case("AllreduceRingRetired", {"--allreduce", "ring"},
                {"--allreduce ring was retired", "--allreduce hierarchical", "cluster/results/README.md"}, true),
      // The same from a --config file written for a run that used it.
      {"ConfigFileAsksForTheRetiredRing",
       [](const std::string& dir) {
         write_text(dir + "/ring.ini", "hidden = 8\nallreduce = ring\n");
         return with_good_data({"--config", dir + "/ring.ini"});
       },
       {"--allreduce ring was retired", "--allreduce hierarchical"}},
      // Every case runs with --checkpoint: the benchmark mode refuses it.
      flag_case("AllreduceNoneWithCheckpoint", {"--allreduce", "none"}, {"--allreduce none", "--checkpoint"}),
      flag_case("LrScheduleUnknown", {"--lr-schedule", "exponential"}, {"--lr-schedule", "exponential"}, true),
      flag_case("LrScalingUnknown", {"--lr-scaling", "cubic"}, {"--lr-scaling", "cubic"}),
      flag_case("WarmupEpochsNegative", {"--warmup-epochs", "-0.5"}, {"--warmup-epochs", "not below 0", "-0.5"}),
      flag_case("WarmupEpochsNotBelowEpochs", {"--warmup-epochs", "1"}, {"--warmup-epochs 1", "below --epochs 1"}),
      flag_case("StepScheduleWithoutDecayEpochs", {"--lr-schedule", "step"}, {"--lr-schedule step", "--lr-decay-epochs"},
                true),
      flag_case("DecayEpochsNotIncreasing", {"--lr-schedule", "step", "--lr-decay-epochs", "30,60,45"},
                {"--lr-decay-epochs 30,60,45", "increase"}),
      flag_case("DecayEpochsNotNumbers", {"--lr-schedule", "step", "--lr-decay-epochs", "30,x"},
                {"--lr-decay-epochs", "'x'", "not a number"}),
      flag_case("DecayEpochsWithoutStepSchedule", {"--lr-decay-epochs", "30"}, {"--lr-decay-epochs", "--lr-schedule step"}),
      flag_case("DecayFactorAboveOne", {"--lr-schedule", "step", "--lr-decay-epochs", "1", "--lr-decay-factor", "2"},
                {"--lr-decay-factor", "at most 1"}),
      flag_case("ReferenceBatchWithoutScaling", {"--lr-reference-batch", "512"}, {"--lr-reference-batch", "--lr-scaling"}),
      // --early-stopping, --monitor and the plateau: a flag nothing reads is an error, not ignored.
      flag_case("MonitorValWithoutValidation", {"--early-stopping", "2", "--monitor", "val_loss"},
                {"--monitor val_loss", "needs validation data"}, true),
      flag_case("MonitorUnknown", {"--early-stopping", "2", "--monitor", "acc"}, {"--monitor", "'acc'", "val_accuracy"}),
      flag_case("MonitorWithoutUse", {"--monitor", "loss"}, {"--monitor", "--early-stopping", "--lr-schedule plateau"}),
      flag_case("MinDeltaWithoutEarlyStopping", {"--min-delta", "0.1"}, {"--min-delta", "--early-stopping"}),
      flag_case("RestoreBestWithoutEarlyStopping", {"--restore-best"}, {"--restore-best", "--early-stopping"}),
      flag_case("PlateauFactorWithoutPlateau", {"--plateau-factor", "0.5"}, {"--plateau-factor", "--lr-schedule plateau"}),
      flag_case("PlateauFactorOne", {"--lr-schedule", "plateau", "--plateau-factor", "1"},
                {"--plateau-factor", "below 1"}),
      // Found after the global batch is known, by every rank: an agreed error.
      flag_case("LrMinAboveThePeak", {"--lr-schedule", "cosine", "--lr-min", "0.5"}, {"--lr-min 0.5", "peak lr 0.05"},
                true),
  };
  // Names: two files that name their classes or features otherwise meet.
  cases.push_back(names_case("ValClassNamesDiffer", "--val", kFeatures, {"ant", "cat", "bee"},
                             {"--val", "other.h5", "classes", "ant, cat, bee", "--data", "named.h5", "ant, bee, cat"}));
  cases.push_back(names_case("ValFeatureNamesDiffer", "--val", {"x0", "y1"}, kClasses,
                             {"--val", "other.h5", "feature 1 is 'y1'", "'x1' in --data", "named.h5"}));
  cases.push_back(names_case("DataFilesClassNamesDiffer", "--data", kFeatures, {"ant", "bee"},
                             {"--data", "other.h5", "classes", "ant, bee", "named.h5"}));
  cases.push_back(names_case("DataFilesFeatureNamesDiffer", "--data", {"x1", "x0"}, {},
                             {"--data", "other.h5", "feature 0 is 'x1'", "named.h5"}));
  cases.push_back(data_case("LabelWithoutAName", "unnamed_label.h5",
                            [](const std::string& p) { write_named(p, 40, 2, {}, {"ant", "bee"}); },
                            {"--data", "unnamed_label.h5", "label 2", "'label_names' names 2 classes"}, true));
  cases.push_back(data_case("FeatureNamesDoNotFit", "three_names.h5",
                            [](const std::string& p) { write_named(p, 40, 2, {"a", "b", "c"}, {}); },
                            {"--data", "three_names.h5", "'feature_names' holds 3 names for 2 features"}));
  for (const std::string flag : {"--init", "--resume"}) {
    const std::string tag = flag == "--init" ? "Init" : "Resume";
    cases.push_back(checkpoint_names_case(tag + "ClassNamesDiffer", flag, kFeatures, {"ant", "bee", "dog"},
                                          {"--data", "other.h5", "classes", flag + " ", "named_ck.h5"}));
    cases.push_back(checkpoint_names_case(tag + "FeatureNamesDiffer", flag, {"x0", "z"}, {},
                                          {"--data", "other.h5", "feature 1 is 'z'", flag + " ", "named_ck.h5"}));
    cases.push_back(flag_case(tag + "MissingFile", {flag, "/nonexistent/ck.h5"}, {flag, "ck.h5", "not found"}));
    // The shared checkpoint is relu's; a leaky_relu checkpoint keeps its slope.
    cases.push_back({tag + "LeakySlopeWithARelu",
                     [flag](const std::string&) { return with_good_data({flag, shared().checkpoint, "--leaky-slope", "0.1"}); },
                     {"--leaky-slope", "only used with activation leaky_relu", flag, "good_ck.h5", "relu"}});
    cases.push_back({tag + "LeakySlopeDiffersFromTheCheckpoints",
                     [flag](const std::string& dir) {
                       const std::string ck = dir + "/leaky_ck.h5";
                       const RunResult fit = run_nn_dist(dir, 1, with_good_data({"--activation", "leaky_relu",
                                                                                 "--leaky-slope", "0.2", "--checkpoint",
                                                                                 ck, "--quiet"}));
                       EXPECT_EQ(fit.code, 0) << describe(fit);
                       return with_good_data({flag, ck, "--leaky-slope", "0.3"});
                     },
                     {flag, "leaky_ck.h5", "slope 0.2", "not --leaky-slope 0.3"},
                     true});
    cases.push_back({tag + "NotACheckpoint",  // a dataset file, not a checkpoint
                     [flag](const std::string&) { return with_good_data({flag, shared().val}); },
                     {flag, "val.h5", "checkpoint"},
                     true});
    cases.push_back({tag + "LayersDoNotFitData",
                     [flag](const std::string& dir) {
                       return std::vector<std::string>{"--data", three_feature_data(dir), "--epochs", "1", flag,
                                                       shared().checkpoint};
                     },
                     {flag, "good_ck.h5", "3 features"},
                     true});
  }
  return cases;
}

class BadInputTest : public E2eTest, public ::testing::WithParamInterface<BadCase> {};

TEST_P(BadInputTest, FailsWithOneLineAndExitCodeTwoOnEveryRankAndKeepsTheCheckpoint) {
  const BadCase& c = GetParam();
  std::vector<std::string> args = c.prepare(dir_);
  ASSERT_FALSE(HasFailure()) << "could not prepare the bad input";
  // Every case also writes a checkpoint, unless it names its own --checkpoint.
  if (std::find(args.begin(), args.end(), "--checkpoint") == args.end()) {
    args.insert(args.end(), {"--checkpoint", good_checkpoint_copy(), "--checkpoint-every", "1"});
  }
  const TreeSnapshot before(dir_), shared_before(shared().dir);
  expect_clean_failure(dir_, 2, args, c.expected);
  if (c.also_three_ranks) expect_clean_failure(dir_, 3, args, c.expected);
  // Inputs, checkpoints and every other file compared byte for byte; nothing created.
  expect_tree_unchanged(before, dir_);
  expect_tree_unchanged(shared_before, shared().dir);
}

INSTANTIATE_TEST_SUITE_P(E2e, BadInputTest, ::testing::ValuesIn(bad_cases()),
                         [](const ::testing::TestParamInfo<BadCase>& info) { return info.param.name; });

// ---- @list files

TEST_F(E2eTest, DataListWithAByteOrderMarkIsRead) {
  // As Windows editors save a list: a byte-order mark first, CRLF line ends.
  write_text(path("list.txt"), "\xef\xbb\xbf" + shared().train + "\r\n");
  const RunResult r = run_nn_dist(dir_, 2, {"--data", "@" + path("list.txt"), "--hidden", "8", "--epochs", "1"});
  expect_success(r);
  EXPECT_TRUE(contains(r.out, "400 samples")) << describe(r);
}

// ---- divergence

TEST_F(E2eTest, DivergenceEndsWithOneErrorAndKeepsTheCheckpoint) {
  const std::string data = path("reg.h5");
  const RunResult gen =
      run_datagen(dir_, {"--kind", "regression", "--samples", "1000", "--features", "5", "--out", data});
  ASSERT_EQ(gen.code, 0) << describe(gen);
  const std::string ck = good_checkpoint_copy();
  const FileSnapshot before(ck);
  // lr 1e6 on mse overflows within the first few steps (observed: inf or nan
  // at step 3 or 4 of 16 in epoch 1), before any checkpoint could be written.
  const std::vector<std::string> args{"--data", data, "--hidden", "16", "--epochs", "3", "--lr", "1e6",
                                      "--checkpoint", ck, "--checkpoint-every", "1"};
  for (int ranks : {2, 3}) {
    expect_clean_failure(dir_, ranks, args, {"diverged", "loss"});
    const RunResult r = run_nn_dist(dir_, ranks, args);
    EXPECT_FALSE(contains(r.out, "epoch 1/")) << "did not diverge in epoch 1\n" << describe(r);
  }
  expect_unchanged(before, ck);
}

// ---- runs that succeed

// The last value printed after `key` (e.g. "val_acc ") in the epoch lines.
double last_value(const std::string& out, const std::string& key) {
  const std::size_t at = out.rfind(key);
  if (at == std::string::npos) return std::nan("");
  return std::atof(out.c_str() + at + key.size());
}

std::vector<double> values_after(const std::string& out, const std::string& key) {
  std::vector<double> v;
  for (const std::string& line : lines_of(out)) {
    if (line.rfind("epoch ", 0) != 0) continue;
    const std::size_t at = line.find(key);
    if (at != std::string::npos) v.push_back(std::atof(line.c_str() + at + key.size()));
  }
  return v;
}

TEST_F(E2eTest, LearnsSpiralsThatALinearModelCannot) {
  const std::string train = path("spirals.h5"), val = path("spirals_val.h5");
  const RunResult gen = run_datagen(dir_, {"--kind", "spirals", "--samples", "4000", "--classes", "3", "--noise",
                                           "0.02", "--out", train, "--val-out", val});
  ASSERT_EQ(gen.code, 0) << describe(gen);
  const std::vector<std::string> common{"--data", train, "--val", val, "--epochs", "40", "--optimizer", "adam",
                                        "--lr", "0.01"};
  std::vector<std::string> mlp_args = common, linear_args = common;
  mlp_args.insert(mlp_args.end(), {"--hidden", "64,64"});
  linear_args.insert(linear_args.end(), {"--hidden", "none"});
  const RunResult mlp = run_nn_dist(dir_, 2, mlp_args);
  expect_success(mlp);
  const RunResult linear = run_nn_dist(dir_, 2, linear_args);
  expect_success(linear);
  ASSERT_EQ(epoch_lines(mlp.out).size(), 40u) << describe(mlp);
  // Observed: the 2-64-64-3 MLP reaches val_acc 0.988, the linear model 0.461.
  EXPECT_GE(last_value(mlp.out, "val_acc "), 0.90) << describe(mlp);
  EXPECT_LT(last_value(linear.out, "val_acc "), 0.70) << describe(linear);
}

TEST_F(E2eTest, HelpExitsZeroAndListsEveryOptionWithItsDefault) {
  const RunResult r = run_nn_dist(dir_, 2, {"--help"});
  ASSERT_EQ(r.code, 0) << describe(r);
  EXPECT_EQ(lines_containing(r.out, "Usage:").size(), 1u) << "help printed by more than one rank\n" << describe(r);
  const std::vector<std::string> with_default{
      "x-dataset", "y-dataset", "hidden", "activation", "loss", "epochs", "batch-size", "global-batch-size",
      "optimizer", "lr", "momentum", "weight-decay", "beta1", "beta2", "eps", "seed", "checkpoint-every",
      "threads", "bucket-mb", "overlap", "allreduce", "max-steps", "warmup-steps", "lr-schedule", "lr-decay-factor",
      "lr-min", "warmup-epochs", "lr-scaling", "lr-reference-batch", "plateau-patience", "plateau-factor",
      "plateau-min-lr", "early-stopping", "min-delta", "dropout", "clip-grad-norm", "leaky-slope", "accumulate-steps"};
  for (const std::string& name : with_default) {
    EXPECT_TRUE(contains(r.out, "--" + name + " arg (=")) << "--" << name << " or its default missing\n" << r.out;
  }
  for (const std::string name : {"data", "val", "init", "checkpoint", "resume", "metrics", "config", "no-shuffle",
                                 "quiet", "profile", "help", "lr-decay-epochs", "monitor", "restore-best"}) {
    EXPECT_TRUE(contains(r.out, "--" + name + " ")) << "--" << name << " missing\n" << r.out;
  }
  EXPECT_TRUE(contains(r.out, "--hidden arg (=128,64)")) << r.out;
  EXPECT_TRUE(contains(r.out, "--epochs arg (=10)")) << r.out;
  EXPECT_TRUE(contains(r.out, "--optimizer arg (=sgd)")) << r.out;
}

// The value of "key": in the JSON line that follows `tag` in text, or -1.
double json_number(const std::string& text, const std::string& tag, const std::string& key) {
  const std::size_t line = text.find(tag + " {");
  if (line == std::string::npos) return -1;
  const std::size_t at = text.find("\"" + key + "\":", line);
  if (at == std::string::npos || at > text.find('\n', line)) return -1;
  return std::atof(text.c_str() + at + key.size() + 3);
}

TEST_F(E2eTest, BenchmarkToolsReportAndRejectBadFlags) {
  const RunResult roof = run_shell(dir_, quote(NN_ROOFLINE_BIN) + " --batch-size 16 --hidden 32 --repeats 3");
  ASSERT_EQ(roof.code, 0) << describe(roof);
  EXPECT_GT(json_number(roof.out, "ROOFLINE_JSON", "samples_per_sec"), 0) << describe(roof);
  EXPECT_GT(json_number(roof.out, "ROOFLINE_JSON", "gflops"), 0) << describe(roof);
  for (const char* bad : {"--hidden 0,x", "--batch-size x", "--repeats", "--fast 1"}) {
    const RunResult r = run_shell(dir_, quote(NN_ROOFLINE_BIN) + " " + std::string(bad));
    EXPECT_EQ(r.code, 2) << describe(r);
    EXPECT_EQ(lines_containing(r.err, "error").size(), 1u) << describe(r);
  }

  for (const std::string tool : {NN_ROOFLINE_BIN, NN_CORELAT_BIN}) {
    const RunResult help = run_shell(dir_, quote(tool) + " --help");
    EXPECT_EQ(help.code, 0) << describe(help);
    EXPECT_TRUE(contains(help.out, "Usage: ")) << describe(help);
  }

  const RunResult bad_cpus = run_shell(dir_, quote(NN_CORELAT_BIN) + " --cpus 0,100000");
  EXPECT_EQ(bad_cpus.code, 2) << describe(bad_cpus);
  EXPECT_TRUE(contains(bad_cpus.err, "--cpus 0,100000")) << describe(bad_cpus);
  if (std::thread::hardware_concurrency() < 2) GTEST_SKIP() << "nn_corelat needs two CPUs";
  const RunResult lat = run_shell(dir_, quote(NN_CORELAT_BIN));
  ASSERT_EQ(lat.code, 0) << describe(lat);
  EXPECT_GT(json_number(lat.out, "CORELAT_JSON", "round_trip_ns"), 0) << describe(lat);
  EXPECT_GT(json_number(lat.out, "CORELAT_JSON", "remote_read_2mb_us"), 0) << describe(lat);
}

TEST_F(E2eTest, ConfigFileIsReadAndTheCommandLineWins) {
  const std::string ini = path("run.ini");
  write_text(ini, "epochs = 3\nhidden = 8\n");
  const RunResult r = run_nn_dist(dir_, 2, {"--data", shared().train, "--config", ini, "--epochs", "2"});
  expect_success(r);
  EXPECT_EQ(epoch_lines(r.out).size(), 2u) << describe(r);
  EXPECT_TRUE(contains(r.out, "epoch 2/2")) << describe(r);
  EXPECT_TRUE(contains(r.out, "layers 2-8-3")) << "hidden = 8 from the file was not used\n" << describe(r);
}

std::vector<std::string> cells_of(const std::string& row) {
  std::vector<std::string> cells;
  std::istringstream in(row);
  for (std::string cell; std::getline(in, cell, ',');) cells.push_back(cell);
  if (!row.empty() && row.back() == ',') cells.push_back("");
  return cells;
}

TEST_F(E2eTest, MetricsCsvHasTheHeaderAndOneRowPerEpoch) {
  const std::string csv = path("metrics.csv");
  const RunResult r = run_nn_dist(dir_, 2, {"--data", shared().train, "--val", shared().val, "--hidden", "8",
                                            "--epochs", "3", "--metrics", csv});
  expect_success(r);
  const std::vector<std::string> rows = lines_of(file_bytes(csv));
  ASSERT_EQ(rows.size(), 4u) << file_bytes(csv);
  // New columns go at the end (scripts cut the others by position).
  EXPECT_EQ(rows[0], "epoch,train_loss,train_accuracy,val_loss,val_accuracy,samples_per_sec,epoch_seconds,lr,"
                     "best_epoch,grad_norm");
  for (int e = 1; e <= 3; ++e) {
    const std::vector<std::string> cells = cells_of(rows[e]);
    ASSERT_EQ(cells.size(), 10u) << rows[e];
    EXPECT_EQ(cells[8], "") << "no --early-stopping: no best epoch";
    EXPECT_EQ(cells[7], "0.05") << "the default --lr, constant";
    EXPECT_EQ(cells[9], "") << "grad_norm: only with --clip-grad-norm";
    EXPECT_EQ(cells[0], std::to_string(e));
    for (int column : {2, 4}) {
      const double accuracy = std::atof(cells[column].c_str());
      EXPECT_GE(accuracy, 0.0) << rows[e];
      EXPECT_LE(accuracy, 1.0) << rows[e];
    }
    EXPECT_TRUE(std::isfinite(std::atof(cells[1].c_str())) && std::atof(cells[1].c_str()) > 0) << rows[e];
    EXPECT_GT(std::atof(cells[5].c_str()), 0.0) << rows[e];
  }
}

// The stored class of a file's X, to prove the test covers the type it names.
H5T_class_t stored_class(const std::string& file, std::size_t* size) {
  const hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  const hid_t ds = H5Dopen2(f, "X", H5P_DEFAULT);
  const hid_t type = H5Dget_type(ds);
  const H5T_class_t cls = H5Tget_class(type);
  *size = H5Tget_size(type);
  H5Tclose(type);
  H5Dclose(ds);
  H5Fclose(f);
  return cls;
}

// The same values stored as float32, read through HDF5 as float.
void write_float32_copy(const std::string& from, const std::string& to) {
  const hid_t f = H5Fopen(from.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  const hid_t xs = H5Dopen2(f, "X", H5P_DEFAULT), ys = H5Dopen2(f, "y", H5P_DEFAULT);
  hsize_t dims[2] = {0, 0};
  const hid_t space = H5Dget_space(xs);
  H5Sget_simple_extent_dims(space, dims, nullptr);
  Matrix<float> x(dims[1], dims[0]);  // (features, n): file rows become columns
  Matrix<double> y(1, dims[0]);
  H5Dread(xs, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x.data());
  H5Dread(ys, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, y.data());
  H5Sclose(space);
  H5Dclose(xs);
  H5Dclose(ys);
  H5Fclose(f);
  write_dataset(to, x, y, true, StoredType::kFloat32);
}

TEST_F(E2eTest, Float64AndInt32FeaturesTrainLikeTheSameValuesAsFloat32) {
  for (const std::string type : {"float64", "int32"}) {
    SCOPED_TRACE(type);
    const std::string train = path(type + ".h5"), val = path(type + "_val.h5");
    const RunResult gen = run_datagen(dir_, {"--kind", "linear", "--samples", "1000", "--val-samples", "500",
                                             "--x-dtype", type, "--out", train, "--val-out", val});
    ASSERT_EQ(gen.code, 0) << describe(gen);
    std::size_t size = 0;
    EXPECT_EQ(stored_class(train, &size), type == "int32" ? H5T_INTEGER : H5T_FLOAT);
    EXPECT_EQ(size, type == "int32" ? 4u : 8u);
    const std::string train32 = path(type + "_as_f32.h5"), val32 = path(type + "_val_as_f32.h5");
    write_float32_copy(train, train32);
    write_float32_copy(val, val32);
    const std::vector<std::string> flags{"--loss", "logistic", "--hidden", "8", "--epochs", "5"};
    std::vector<std::string> args{"--data", train, "--val", val}, args32{"--data", train32, "--val", val32};
    args.insert(args.end(), flags.begin(), flags.end());
    args32.insert(args32.end(), flags.begin(), flags.end());
    const RunResult r = run_nn_dist(dir_, 2, args);
    expect_success(r);
    const RunResult r32 = run_nn_dist(dir_, 2, args32);
    expect_success(r32);
    EXPECT_EQ(epoch_lines_without_timing(r.out), epoch_lines_without_timing(r32.out));
    // Observed: val_acc 0.716 (float64, as float32) and 0.952 (int32: x100 features).
    EXPECT_GT(last_value(r.out, "val_acc "), 0.65) << describe(r);
  }
}

TEST_F(E2eTest, RegressionWithMseLowersTheLoss) {
  const std::string train = path("reg.h5");
  const RunResult gen = run_datagen(dir_, {"--kind", "regression", "--samples", "2000", "--out", train});
  ASSERT_EQ(gen.code, 0) << describe(gen);
  const RunResult r = run_nn_dist(dir_, 2, {"--data", train, "--hidden", "32", "--epochs", "5", "--optimizer", "adam",
                                            "--lr", "0.01"});
  expect_success(r);
  EXPECT_TRUE(contains(r.out, "mse loss")) << describe(r);
  const std::vector<double> losses = values_after(r.out, "loss ");
  ASSERT_EQ(losses.size(), 5u) << describe(r);
  // Observed: 0.41 in epoch 1, 0.15 in epoch 5.
  EXPECT_LT(losses.back(), 0.6 * losses.front()) << describe(r);

  const RunResult identity = run_nn_dist(dir_, 2, {"--data", train, "--hidden", "32", "--activation", "identity",
                                                   "--epochs", "3"});
  expect_success(identity);
  EXPECT_TRUE(contains(identity.out, "identity hidden")) << describe(identity);
  const std::vector<double> identity_losses = values_after(identity.out, "loss ");
  ASSERT_EQ(identity_losses.size(), 3u) << describe(identity);
  EXPECT_LT(identity_losses.back(), identity_losses.front()) << describe(identity);
}

TEST_F(E2eTest, LogisticLossLearnsXorWithHiddenLayersAndLinearDataWithout) {
  for (const std::string kind : {"xor", "linear"}) {
    SCOPED_TRACE(kind);
    const std::string train = path(kind + ".h5"), val = path(kind + "_val.h5");
    const RunResult gen = run_datagen(dir_, {"--kind", kind, "--samples", "2000", "--val-samples", "1000", "--out",
                                             train, "--val-out", val});
    ASSERT_EQ(gen.code, 0) << describe(gen);
    const RunResult r = run_nn_dist(dir_, 2, {"--data", train, "--val", val, "--loss", "logistic", "--hidden",
                                              kind == "xor" ? "16,16" : "none", "--epochs", "20", "--optimizer",
                                              "adam", "--lr", "0.01"});
    expect_success(r);
    EXPECT_TRUE(contains(r.out, "logistic loss")) << describe(r);
    // Observed: xor 0.866 (noise 0.1 caps it), logistic regression 0.981.
    EXPECT_GE(last_value(r.out, "val_acc "), kind == "xor" ? 0.80 : 0.93) << describe(r);
  }
}

std::vector<hsize_t> dataset_dims(hid_t file, const std::string& name) {
  const hid_t ds = H5Dopen2(file, name.c_str(), H5P_DEFAULT);
  if (ds < 0) return {};
  const hid_t space = H5Dget_space(ds);
  std::vector<hsize_t> dims(std::max(0, H5Sget_simple_extent_ndims(space)));
  H5Sget_simple_extent_dims(space, dims.data(), nullptr);
  H5Sclose(space);
  H5Dclose(ds);
  return dims;
}

std::string string_attr(hid_t group, const std::string& name) {
  const hid_t attr = H5Aopen(group, name.c_str(), H5P_DEFAULT);
  if (attr < 0) return "";
  const hid_t type = H5Aget_type(attr);
  std::string value;
  if (H5Tis_variable_str(type) > 0) {
    char* text = nullptr;
    const hid_t mem = H5Tget_native_type(type, H5T_DIR_ASCEND);
    H5Aread(attr, mem, &text);
    value = text ? text : "";
    H5free_memory(text);
    H5Tclose(mem);
  } else {
    value.assign(H5Tget_size(type), '\0');
    H5Aread(attr, type, value.data());
    value = value.c_str();
  }
  H5Tclose(type);
  H5Aclose(attr);
  return value;
}

TEST_F(E2eTest, CheckpointHasTheDocumentedLayout) {
  const std::string ck = path("ck.h5");
  const RunResult r = run_nn_dist(dir_, 2, {"--data", shared().train, "--hidden", "8,5", "--activation", "tanh",
                                            "--epochs", "1", "--checkpoint", ck});
  expect_success(r);
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  const hid_t file = H5Fopen(ck.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  ASSERT_GE(file, 0) << describe(r);
  const hid_t model = H5Gopen2(file, "model", H5P_DEFAULT);
  ASSERT_GE(model, 0);
  // Layers 2-8-5-3: W{l} is (out, in) like torch.nn.Linear.weight.
  EXPECT_EQ(dataset_dims(model, "W1"), (std::vector<hsize_t>{8, 2}));
  EXPECT_EQ(dataset_dims(model, "b1"), (std::vector<hsize_t>{8}));
  EXPECT_EQ(dataset_dims(model, "W2"), (std::vector<hsize_t>{5, 8}));
  EXPECT_EQ(dataset_dims(model, "W3"), (std::vector<hsize_t>{3, 5}));
  EXPECT_EQ(dataset_dims(model, "b3"), (std::vector<hsize_t>{3}));
  ASSERT_GT(H5Aexists(model, "sizes"), 0);
  const hid_t sizes_attr = H5Aopen(model, "sizes", H5P_DEFAULT);
  const hid_t space = H5Aget_space(sizes_attr);
  std::vector<long long> sizes(H5Sget_simple_extent_npoints(space));
  H5Aread(sizes_attr, H5T_NATIVE_LLONG, sizes.data());
  H5Sclose(space);
  H5Aclose(sizes_attr);
  EXPECT_EQ(sizes, (std::vector<long long>{2, 8, 5, 3}));
  EXPECT_EQ(string_attr(model, "activation"), "tanh");
  EXPECT_EQ(string_attr(model, "loss"), "softmax");
  H5Gclose(model);
  H5Fclose(file);
}

TEST_F(E2eTest, SamplesNotDivisibleByRanksOrBatchFinish) {
  const std::string train = path("odd.h5");
  const RunResult gen = run_datagen(dir_, {"--kind", "spirals", "--samples", "1001", "--out", train});
  ASSERT_EQ(gen.code, 0) << describe(gen);
  const RunResult r = run_nn_dist(dir_, 3, {"--data", train, "--hidden", "8", "--batch-size", "7", "--epochs", "2"});
  expect_success(r);
  EXPECT_TRUE(contains(r.out, "1001 samples")) << describe(r);
  // 334 samples on rank 0 in batches of 7: 48 steps.
  EXPECT_TRUE(contains(r.out, "48 steps/epoch")) << describe(r);
  EXPECT_EQ(epoch_lines(r.out).size(), 2u) << describe(r);
}


TEST_F(E2eTest, CheckpointDirKeepsTheNewestAndResumeAutoContinuesFromThem) {
  const std::string ck = path("ck");
  const std::vector<std::string> common{"--data", shared().train, "--hidden", "8", "--checkpoint-dir", ck,
                                        "--resume", "auto", "--keep-checkpoints", "2"};
  std::vector<std::string> first = common, second = common, straight{"--data", shared().train, "--hidden", "8",
                                                                      "--epochs", "5"};
  first.insert(first.end(), {"--epochs", "3"});
  second.insert(second.end(), {"--epochs", "5"});
  // 400 samples over 2 ranks, batch 32: 7 steps per epoch.
  const RunResult a = run_nn_dist(dir_, 2, first);
  expect_success(a);
  EXPECT_TRUE(contains(a.out, "no checkpoint yet, starting fresh")) << describe(a);
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(ck)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"ckpt-0000000014.h5", "ckpt-0000000021.h5"})) << "keeps the newest 2";
  // A damaged newest file is skipped with a warning naming it; the run continues from the one before.
  write_text(ck + "/ckpt-0000000099.h5", "torn");
  const RunResult b = run_nn_dist(dir_, 2, second);
  expect_success(b);
  EXPECT_TRUE(contains(b.err, "ckpt-0000000099.h5")) << describe(b);
  EXPECT_TRUE(contains(b.out, "resuming from " + fs::canonical(ck).string() + "/ckpt-0000000021.h5") ||
              contains(b.out, "resuming from " + ck + "/ckpt-0000000021.h5"))
      << describe(b);
  EXPECT_EQ(epoch_lines(b.out).size(), 2u) << describe(b);
  // Interrupted after 3 epochs and continued equals 5 epochs straight, bit for bit.
  const RunResult c = run_nn_dist(dir_, 2, straight);
  expect_success(c);
  const std::vector<std::string> whole = epoch_lines_without_timing(c.out), resumed = epoch_lines_without_timing(b.out);
  ASSERT_EQ(whole.size(), 5u);
  ASSERT_EQ(resumed.size(), 2u);
  EXPECT_EQ(resumed[0], whole[3]);
  EXPECT_EQ(resumed[1], whole[4]);
}

// ---- a --checkpoint-dir belongs to one run

std::vector<std::string> names_in(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

TEST_F(E2eTest, FreshRunIntoAnotherRunsCheckpointDirIsRefusedAndChangesNothing) {
  // Before: the second run exited 0, its own checkpoint pruned by the first run's three newer ones,
  // and --resume auto then continued the first run's model.
  const std::string ck = path("ck");
  const RunResult first = run_nn_dist(dir_, 2, {"--data", shared().train, "--hidden", "8", "--epochs", "4",
                                                "--checkpoint-dir", ck, "--quiet"});
  expect_success(first);
  ASSERT_EQ(names_in(ck), (std::vector<std::string>{"ckpt-0000000014.h5", "ckpt-0000000021.h5", "ckpt-0000000028.h5"}));
  const TreeSnapshot before(ck);
  expect_clean_failure(dir_, 2,
                       {"--data", shared().train, "--hidden", "16", "--epochs", "1", "--checkpoint-dir", ck, "--seed",
                        "7"},
                       {"--checkpoint-dir", "another run", "ckpt-0000000014.h5 to ckpt-0000000028.h5, 3 files",
                        "--resume auto", "folder of its own"});
  expect_tree_unchanged(before, ck);
  // The first run continues from its own newest, in its own folder.
  const RunResult resumed = run_nn_dist(dir_, 2, {"--data", shared().train, "--hidden", "8", "--epochs", "5",
                                                  "--checkpoint-dir", ck, "--resume", "auto"});
  expect_success(resumed);
  EXPECT_TRUE(contains(resumed.out, "resuming from " + fs::canonical(ck).string() + "/ckpt-0000000028.h5") ||
              contains(resumed.out, "resuming from " + ck + "/ckpt-0000000028.h5"))
      << describe(resumed);
  EXPECT_EQ(names_in(ck), (std::vector<std::string>{"ckpt-0000000021.h5", "ckpt-0000000028.h5", "ckpt-0000000035.h5"}));
}

TEST_F(E2eTest, PruningKeepsTheRunsOwnNewestBesideFilesNamedLikeCheckpoints) {
  // An input (the validation set) and a file of the user's, named like checkpoints past this run's last
  // step. Before: counted as checkpoints, they made --keep-checkpoints 1 delete the user's file and then
  // the run's own new checkpoint, leaving the run without one.
  const std::string ck = path("ck");
  fs::create_directory(ck);
  const std::string val = ck + "/ckpt-0000000099.h5", notes = ck + "/ckpt-0000000098.h5";
  fs::copy_file(shared().val, val);
  write_text(notes, "the user's notes");
  const FileSnapshot val_before(val), notes_before(notes);
  const RunResult r = run_nn_dist(dir_, 2, {"--data", shared().train, "--val", val, "--hidden", "8", "--epochs", "2",
                                            "--checkpoint-dir", ck, "--keep-checkpoints", "1", "--quiet"});
  expect_success(r);
  EXPECT_EQ(names_in(ck), (std::vector<std::string>{"ckpt-0000000014.h5", "ckpt-0000000098.h5", "ckpt-0000000099.h5"}));
  expect_unchanged(val_before, val);
  expect_unchanged(notes_before, notes);
}

TEST_F(E2eTest, ContinuingFromAnEarlierCheckpointIntoItsFolderIsRefused) {
  // Before: the continuation overwrote ckpt-14 and ckpt-21 with another history, and a later
  // --resume auto could take either one.
  const std::string ck = path("ck");
  expect_success(run_nn_dist(dir_, 2, {"--data", shared().train, "--hidden", "8", "--epochs", "3", "--checkpoint-dir",
                                       ck, "--quiet"}));
  const TreeSnapshot before(ck);
  expect_clean_failure(dir_, 2,
                       {"--data", shared().train, "--hidden", "8", "--epochs", "4", "--checkpoint-dir", ck, "--resume",
                        ck + "/ckpt-0000000007.h5"},
                       {"--checkpoint-dir", "ckpt-0000000014.h5", "later checkpoint", "step 7", "--resume auto"});
  expect_tree_unchanged(before, ck);
}

// mpirun's prefix that takes away root's power to read and search any folder
// (the suite may run as root), "" when not root, or nullopt (with *why) when
// it cannot be taken away here.
std::optional<std::string> without_root_powers(std::string* why) {
  if (::geteuid() != 0) return std::string();
  const std::string setpriv = "setpriv --bounding-set -dac_override,-dac_read_search ";
  if (std::system((setpriv + "true >/dev/null 2>&1").c_str()) != 0) {
    *why = "running as root, and setpriv cannot drop CAP_DAC_OVERRIDE here";
    return std::nullopt;
  }
  return setpriv;
}

TEST_F(E2eTest, CheckpointDirThatCannotBeListedOrSearchedIsAnError) {
  std::string why;
  const std::optional<std::string> launcher = without_root_powers(&why);
  if (!launcher) GTEST_SKIP() << why;
  const std::string ck = path("ck");
  expect_success(run_nn_dist(dir_, 2, {"--data", shared().train, "--hidden", "8", "--epochs", "2", "--checkpoint-dir",
                                       ck, "--quiet"}));
  const FileSnapshot first(ck + "/ckpt-0000000007.h5"), second(ck + "/ckpt-0000000014.h5");
  // Written to but not read (mode 333). Before: --resume auto said "no checkpoint yet, starting
  // fresh" and overwrote both.
  fs::permissions(ck, fs::perms(0333));
  for (const bool resume : {true, false}) {
    std::vector<std::string> args{"--data", shared().train, "--hidden", "8", "--epochs", "2", "--checkpoint-dir", ck};
    if (resume) args.insert(args.end(), {"--resume", "auto"});
    expect_clean_failure(dir_, 2, args, {"--checkpoint-dir", "cannot list the folder", "Permission denied"}, *launcher);
  }
  fs::permissions(ck, fs::perms(0755));
  expect_unchanged(first, ck + "/ckpt-0000000007.h5");
  expect_unchanged(second, ck + "/ckpt-0000000014.h5");
  // A folder on the way that cannot be searched. Before: "filesystem error" and MPI_ABORT.
  fs::create_directories(path("closed/ck"));
  fs::permissions(path("closed"), fs::perms(0600));
  for (const bool resume : {true, false}) {
    std::vector<std::string> args{"--data", shared().train, "--checkpoint-dir", path("closed/ck")};
    if (resume) args.insert(args.end(), {"--resume", "auto"});
    expect_clean_failure(dir_, 2, args, {"--checkpoint-dir", "closed/ck", "cannot be examined", "Permission denied"},
                         *launcher);
  }
  fs::permissions(path("closed"), fs::perms(0755));
}

TEST_F(E2eTest, MidEpochResumeRefusesAnotherSampleOrder) {
  // y = 0..1999 and an lr too small to move anything: an epoch's loss is the mean of y^2/2 over the
  // samples it trained, 666166.75 when each is trained once. Before: a mid-epoch resume with another
  // --no-shuffle or --cache-mb continued in another order (764500.17 and 663820.96).
  const std::string data = path("id.h5");
  std::vector<double> y(2000);
  std::iota(y.begin(), y.end(), 0.0);
  write_h5(data, [&](hid_t f) {
    add_dataset(f, "X", {2000, 1}, H5T_IEEE_F32LE, std::vector<double>(2000, 0.0));
    add_dataset(f, "y", {2000}, H5T_IEEE_F32LE, y);
  });
  const auto run = [&](std::vector<std::string> more) {
    std::vector<std::string> args{"--data", data, "--hidden", "none", "--loss", "mse", "--lr", "1e-30", "--epochs", "1",
                                  "--progress", "off"};
    args.insert(args.end(), more.begin(), more.end());
    return args;
  };
  const std::string whole_pass = "epoch 1/1  loss 666166.75000";
  const auto expect_whole_pass = [&](const RunResult& r) {
    expect_success(r);
    ASSERT_EQ(epoch_lines(r.out).size(), 1u) << describe(r);
    EXPECT_EQ(epoch_lines(r.out)[0].rfind(whole_pass, 0), 0u) << describe(r);
  };
  for (const bool streamed : {false, true}) {
    SCOPED_TRACE(streamed ? "saved while streaming (--cache-mb 1)" : "saved from memory");
    const std::string ck = path(streamed ? "streamed" : "memory");
    const std::vector<std::string> storage = streamed ? std::vector<std::string>{"--cache-mb", "1"}
                                                      : std::vector<std::string>{};
    std::vector<std::string> save{"--checkpoint-dir", ck, "--checkpoint-every-steps", "10", "--keep-checkpoints", "10"};
    save.insert(save.end(), storage.begin(), storage.end());
    expect_success(run_nn_dist(dir_, 2, run(save)));
    const std::string mid = ck + "/ckpt-0000000010.h5";  // step 10 of 32
    std::vector<std::string> same{"--resume", mid, "--checkpoint", path("out.h5")};
    same.insert(same.end(), storage.begin(), storage.end());
    expect_whole_pass(run_nn_dist(dir_, 2, run(same)));
    const std::vector<std::string> other_storage = streamed ? std::vector<std::string>{}
                                                            : std::vector<std::string>{"--cache-mb", "1"};
    std::vector<std::string> moved{"--resume", mid};
    moved.insert(moved.end(), other_storage.begin(), other_storage.end());
    expect_clean_failure(dir_, 2, run(moved), {"--resume", "middle of epoch 1", "windows of", "--cache-mb"});
    std::vector<std::string> unshuffled{"--resume", mid, "--no-shuffle"};
    unshuffled.insert(unshuffled.end(), storage.begin(), storage.end());
    expect_clean_failure(dir_, 2, run(unshuffled), {"--resume", "shuffled", "in file order", "--no-shuffle"});
  }
  // What is compared is the order, not the flag: a larger cache with the same windows over this rank's
  // 1000 rows continues, and in file order streaming gives the same batches as memory.
  expect_whole_pass(run_nn_dist(dir_, 2, run({"--resume", path("streamed/ckpt-0000000010.h5"), "--cache-mb", "2"})));
  expect_success(run_nn_dist(dir_, 2, run({"--no-shuffle", "--checkpoint-dir", path("in_order"),
                                           "--checkpoint-every-steps", "10", "--keep-checkpoints", "10"})));
  expect_whole_pass(run_nn_dist(
      dir_, 2, run({"--resume", path("in_order/ckpt-0000000010.h5"), "--no-shuffle", "--cache-mb", "1"})));
}

// ---- learning-rate schedules

// What --resume reads from a checkpoint of an SGD run with momentum.
struct SavedRun {
  FlatBuffer params, momentum;
  TrainingState state;
};

SavedRun read_saved(const std::string& path, const std::vector<long>& sizes) {
  const Layout layout(sizes);
  SavedRun saved;
  saved.params.resize(layout.total());
  read_checkpoint_params(path, path, layout, saved.params.data());
  OptimizerOptions options;
  options.momentum = 0.9;
  Optimizer optimizer(options, layout.total());
  saved.state = read_checkpoint_state(path, path, layout, optimizer);
  saved.momentum.assign(optimizer.state()[0], optimizer.state()[0] + layout.total());
  return saved;
}

bool same_bits(const FlatBuffer& a, const FlatBuffer& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// The run `args(extra flags)` (2 ranks, 7 steps per epoch) checkpointed every
// 5 steps into dir/ck, resumed from step 10 (mid-epoch 2), ends with the
// uninterrupted run's parameters and momentum (`whole`) bit for bit.
void expect_mid_epoch_resume_matches(const std::string& dir,
                                     const std::function<std::vector<std::string>(std::vector<std::string>)>& args,
                                     const SavedRun& whole, const std::vector<long>& sizes) {
  expect_success(run_nn_dist(
      dir, 2, args({"--checkpoint-dir", dir + "/ck", "--checkpoint-every-steps", "5", "--keep-checkpoints", "100"})));
  const std::string from = dir + "/ck/ckpt-0000000010.h5";
  ASSERT_GT(read_saved(from, sizes).state.epoch_step, 0) << from << " is not a mid-epoch checkpoint";
  expect_success(run_nn_dist(dir, 2, args({"--resume", from, "--checkpoint", dir + "/resumed.h5"})));
  const SavedRun end = read_saved(dir + "/resumed.h5", sizes);
  EXPECT_TRUE(same_bits(end.params, whole.params)) << "the resumed run's parameters differ";
  EXPECT_TRUE(same_bits(end.momentum, whole.momentum)) << "the resumed run's momentum differs";
}

TEST_F(E2eTest, ScheduledRunResumedMidEpochEndsWithTheUninterruptedRunsBits) {
  // 400 samples on 2 ranks, batch 32: 7 steps per epoch, global batch 64, so
  // the peak lr is 0.02 x 64/16 = 0.08; warmup until step 10.5, then cosine.
  const std::vector<std::string> common{"--data", shared().train, "--hidden", "8", "--epochs", "4", "--lr", "0.02",
                                        "--momentum", "0.9", "--lr-schedule", "cosine", "--warmup-epochs", "1.5",
                                        "--lr-scaling", "linear", "--lr-reference-batch", "16"};
  const auto with = [&](std::vector<std::string> more) {
    more.insert(more.begin(), common.begin(), common.end());
    return more;
  };
  const RunResult straight = run_nn_dist(dir_, 2, with({"--checkpoint", path("straight.h5"), "--metrics", path("straight.csv")}));
  expect_success(straight);
  EXPECT_EQ(lines_containing(straight.out, "nn_dist: learning rate: peak lr 0.08 (--lr 0.02 x 64/16, linear scaling)").size(), 1u)
      << describe(straight);
  const SavedRun whole = read_saved(path("straight.h5"), {2, 8, 3});
  ASSERT_EQ(whole.state.global_step, 28);
  // The flags, as /training records them.
  ASSERT_TRUE(whole.state.has_schedule);
  EXPECT_EQ(whole.state.schedule.schedule, LrSchedule::kCosine);
  EXPECT_EQ(whole.state.schedule.warmup_epochs, 1.5);
  EXPECT_EQ(whole.state.schedule.scaling, LrScaling::kLinear);
  EXPECT_EQ(whole.state.schedule.reference_batch, 16);
  EXPECT_EQ(whole.state.schedule.epochs, 4);
  EXPECT_EQ(whole.state.schedule.lr_min, 0.0);
  EXPECT_EQ(whole.state.lr, 0.02);
  EXPECT_DOUBLE_EQ(whole.state.lr_peak, 0.08);
  EXPECT_EQ(whole.state.global_batch, 64);

  // The same run, checkpointing every 5 steps: step 10 is in epoch 2 (in the
  // warmup), step 20 in epoch 3 (in the cosine); both mid-epoch.
  const RunResult stepped = run_nn_dist(
      dir_, 2, with({"--checkpoint-dir", path("ck"), "--checkpoint-every-steps", "5", "--keep-checkpoints", "100"}));
  expect_success(stepped);
  const std::vector<std::string> straight_rows = lines_of(file_bytes(path("straight.csv")));
  ASSERT_EQ(straight_rows.size(), 5u);
  for (const std::string step : {"10", "20"}) {
    SCOPED_TRACE("resumed from step " + step);
    const std::string from = path("ck/ckpt-00000000" + step + ".h5");
    ASSERT_GT(read_saved(from, {2, 8, 3}).state.epoch_step, 0) << from << " is not a mid-epoch checkpoint";
    const std::string out = path("resumed" + step + ".h5"), csv = path("resumed" + step + ".csv");
    const RunResult resumed = run_nn_dist(dir_, 2, with({"--resume", from, "--checkpoint", out, "--metrics", csv}));
    expect_success(resumed);
    EXPECT_FALSE(contains(resumed.out, "differs")) << describe(resumed);
    const SavedRun end = read_saved(out, {2, 8, 3});
    EXPECT_TRUE(same_bits(end.params, whole.params)) << "the parameters differ from the uninterrupted run's";
    EXPECT_TRUE(same_bits(end.momentum, whole.momentum)) << "the momentum differs from the uninterrupted run's";
    // Its epochs' rows: the same losses and lr as the uninterrupted run's (timings aside).
    const std::vector<std::string> rows = lines_of(file_bytes(csv));
    ASSERT_GE(rows.size(), 3u);
    for (std::size_t i = 1; i < rows.size(); ++i) {
      std::vector<std::string> mine = cells_of(rows[i]);
      ASSERT_EQ(mine.size(), 10u) << rows[i];
      std::vector<std::string> theirs = cells_of(straight_rows[std::stoul(mine[0])]);
      for (std::vector<std::string>* cells : {&mine, &theirs}) (*cells)[5] = (*cells)[6] = "";
      EXPECT_EQ(mine, theirs) << rows[i];
    }
  }
  // The lr column follows the cosine to near 0 (the last step is 27 of 28).
  const double last_lr = std::atof(cells_of(straight_rows[4])[7].c_str());
  const double p = (27.0 / 7 - 1.5) / 2.5;
  EXPECT_NEAR(last_lr, 0.08 * (1 + std::cos(std::acos(-1.0) * p)) / 2, 1e-12);

  // Other flags on --resume: one note naming what changed, then training with them.
  const RunResult changed =
      run_nn_dist(dir_, 2, with({"--resume", path("ck/ckpt-0000000020.h5"), "--lr-min", "0.001"}));
  expect_success(changed);
  const std::vector<std::string> notes = lines_containing(changed.out, "differs from the checkpoint's");
  ASSERT_EQ(notes.size(), 1u) << describe(changed);
  EXPECT_TRUE(contains(notes[0], "(--lr-min 0 -> 0.001)")) << notes[0];
  EXPECT_EQ(epoch_lines(changed.out).size(), 2u) << describe(changed);
}

// ---- --progress auto under mpirun: mpirun's own stdout decides, not the ranks' (a pseudo-terminal of mpirun's)

// Runs nn_dist with --progress auto as a batch system would not: none of their variables set.
std::string without_batch_system(const std::string& command) {
  return "env -u SLURM_JOB_ID -u PBS_JOBID -u LSB_JOBID " + command;
}

TEST_F(E2eTest, ProgressAutoUnderMpirunIntoAFileIsPlainLines) {
  // 25 steps in the epoch; a line after each but the last (they come every 1e-9 s).
  const std::vector<std::string> args{"--data", shared().train, "--hidden", "8", "--epochs", "1", "--batch-size", "8",
                                      "--progress", "auto", "--log-every-seconds", "1e-9"};
  const std::string wrapper = " sh -c " + quote("\"$0\" \"$@\"");  // a wrapper between mpirun and nn_dist
  for (const std::string& via : {std::string(), wrapper}) {
    SCOPED_TRACE(via.empty() ? "nn_dist started by mpirun" : "nn_dist started by sh, started by mpirun");
    const RunResult r =
        run_shell(dir_, without_batch_system(mpirun_prefix(2) + via + " " + quote(NN_DIST_BIN) + joined(args)));
    expect_success(r);
    EXPECT_EQ(lines_containing(r.out, "progress: epoch 1/1  step ").size(), 24u) << describe(r);
    EXPECT_FALSE(contains(r.out, "\033[K")) << describe(r);
    EXPECT_FALSE(contains(r.out, "\r")) << describe(r);
  }
}

TEST_F(E2eTest, ProgressAutoUnderMpirunOnATerminalRewritesOneLine) {
  if (std::system("command -v script >/dev/null 2>&1") != 0) GTEST_SKIP() << "needs script(1) for a terminal";
  const std::string data = path("many.h5");
  const RunResult gen = run_datagen(dir_, {"--kind", "spirals", "--samples", "40000", "--out", data});
  ASSERT_EQ(gen.code, 0) << describe(gen);
  // 20000 steps an epoch (seconds here): the rewritten line comes 0.5 s into it.
  const std::vector<std::string> args{"--data", data, "--hidden", "512,512", "--epochs", "100", "--batch-size", "1",
                                      "--progress", "auto", "--log-every-seconds", "1e-9"};
  for (const bool to_files : {false, true}) {
    SCOPED_TRACE(to_files ? "mpirun --output-filename" : "mpirun");
    const std::string tag = to_files ? "files" : "tty", typescript = path("typescript." + tag),
                      pid_file = path("mpirun.pid." + tag);
    const std::string mpirun = mpirun_prefix(2) + (to_files ? " --output-filename " + quote(path("out")) : "") + " " +
                               quote(NN_DIST_BIN) + joined(args);
    // script(1) gives mpirun a terminal; once a progress line is there, SIGUSR1 to mpirun ends the run.
    const std::string command =
        without_batch_system("script -qfec " + quote(mpirun + " & echo $! > " + quote(pid_file) + "; wait $!") + " " +
                             quote(typescript)) +
        " >/dev/null 2>&1 & s=$!; i=0; "
        "while [ $i -lt 1200 ] && ! grep -q ETA " + quote(typescript) + " 2>/dev/null && kill -0 $s 2>/dev/null; do "
        "  sleep 0.05; i=$((i+1)); "
        "done; "
        "grep -q ETA " + quote(typescript) + " && echo 'test: a progress line came' >&2; "
        "kill -USR1 $(cat " + quote(pid_file) + "); wait $s";
    const RunResult r = run_shell(dir_, "sh -c " + quote(command));
    const std::string out = file_bytes(typescript);
    ASSERT_TRUE(contains(r.err, "test: a progress line came")) << describe(r) << "--- terminal ---\n" << out;
    if (to_files) {  // the rank's output lands in files too: plain lines
      EXPECT_TRUE(contains(out, "progress: epoch 1/100  step 1/20000")) << out;
      EXPECT_FALSE(contains(out, "\033[K")) << out;
    } else {
      EXPECT_TRUE(contains(out, "\r\033[Kepoch 1/100  step ")) << out;
      EXPECT_FALSE(contains(out, "progress: ")) << out;
    }
  }
}

// --dropout 0 is today's run to the bit; with dropout and clipping a run
// resumed mid-epoch ends with the uninterrupted run's bits, and the metrics
// CSV carries each epoch's gradient norm.
TEST_F(E2eTest, DropoutAndClippingKeepTheBitsOfResumedAndDefaultRuns) {
  const std::vector<std::string> common{"--data", shared().train, "--hidden", "8", "--epochs", "3", "--lr", "0.05",
                                        "--momentum", "0.9"};
  const auto with = [&](std::vector<std::string> more) {
    more.insert(more.begin(), common.begin(), common.end());
    return more;
  };
  expect_success(run_nn_dist(dir_, 2, with({"--checkpoint", path("plain.h5")})));
  expect_success(run_nn_dist(dir_, 2, with({"--checkpoint", path("zero.h5"), "--dropout", "0"})));
  const SavedRun plain = read_saved(path("plain.h5"), {2, 8, 3});
  const SavedRun zero = read_saved(path("zero.h5"), {2, 8, 3});
  EXPECT_TRUE(same_bits(zero.params, plain.params)) << "--dropout 0 changed the parameters";
  EXPECT_TRUE(same_bits(zero.momentum, plain.momentum)) << "--dropout 0 changed the momentum";

  const std::vector<std::string> regular{"--dropout", "0.3", "--clip-grad-norm", "0.05"};
  auto regularised = [&](std::vector<std::string> more) {
    more.insert(more.begin(), regular.begin(), regular.end());
    return with(more);
  };
  expect_success(run_nn_dist(dir_, 2, regularised({"--checkpoint", path("straight.h5"), "--metrics", path("m.csv")})));
  const SavedRun whole = read_saved(path("straight.h5"), {2, 8, 3});
  EXPECT_FALSE(same_bits(whole.params, plain.params)) << "dropout and clipping changed nothing";
  const std::vector<std::string> rows = lines_of(file_bytes(path("m.csv")));
  ASSERT_EQ(rows.size(), 4u);
  for (std::size_t e = 1; e < rows.size(); ++e) {
    const std::vector<std::string> cells = cells_of(rows[e]);
    ASSERT_EQ(cells.size(), 10u) << rows[e];
    EXPECT_GT(std::atof(cells[9].c_str()), 0.05) << "grad_norm: the last step's norm, above the clip: " << rows[e];
  }
  expect_mid_epoch_resume_matches(dir_, regularised, whole, {2, 8, 3});
}

// --precision bf16 keeps nn_dist's promises: the same run twice gives the
// same bits, so do data kept in memory as bf16 and data streamed as float32,
// ranks hold identical parameters (one checkpoint), a mid-epoch resume ends
// with the uninterrupted run's bits, and a resume or --init in the other
// precision carries the state over with a note.
TEST_F(E2eTest, Bf16RunsRepeatAndResumeBitForBit) {
  const RunResult probe = run_nn_dist(dir_, 1, {"--data", shared().train, "--epochs", "1", "--precision", "bf16",
                                                "--checkpoint", path("probe.h5"), "--max-steps", "1"});
  if (probe.code == 2 && contains(probe.err, "neither AMX-BF16 nor AVX512_BF16")) {
    GTEST_SKIP() << "this CPU has no bf16 products (AMX-BF16 or AVX512_BF16)";
  }
  expect_success(probe);
  const std::vector<std::string> common{"--data", shared().train, "--hidden", "16", "--epochs", "3", "--lr", "0.05",
                                        "--momentum", "0.9", "--precision", "bf16"};
  const auto with = [&](std::vector<std::string> more) {
    more.insert(more.begin(), common.begin(), common.end());
    return more;
  };
  expect_success(run_nn_dist(dir_, 2, with({"--checkpoint", path("a.h5")})));
  expect_success(run_nn_dist(dir_, 2, with({"--checkpoint", path("b.h5")})));
  const SavedRun a = read_saved(path("a.h5"), {2, 16, 3});
  EXPECT_TRUE(same_bits(a.params, read_saved(path("b.h5"), {2, 16, 3}).params)) << "the same bf16 run twice differs";
  std::vector<std::string> f32 = with({"--checkpoint", path("f32.h5")});
  f32.erase(f32.end() - 4, f32.end() - 2);  // without --precision bf16
  expect_success(run_nn_dist(dir_, 2, f32));
  EXPECT_FALSE(same_bits(a.params, read_saved(path("f32.h5"), {2, 16, 3}).params)) << "bf16 changed nothing";
  // In memory the shard is kept as bf16; streamed it stays float32: the same bits.
  expect_success(run_nn_dist(dir_, 2, with({"--no-shuffle", "--checkpoint", path("kept.h5")})));
  expect_success(run_nn_dist(dir_, 2, with({"--no-shuffle", "--cache-mb", "1", "--checkpoint", path("streamed.h5")})));
  EXPECT_TRUE(same_bits(read_saved(path("kept.h5"), {2, 16, 3}).params,
                        read_saved(path("streamed.h5"), {2, 16, 3}).params))
      << "bf16 training data kept in memory and streamed as float32 trained differently";

  expect_mid_epoch_resume_matches(dir_, with, a, {2, 16, 3});

  std::vector<std::string> across = {"--data", shared().train, "--hidden", "16", "--epochs", "3", "--lr", "0.05",
                                     "--momentum", "0.9", "--resume", path("ck/ckpt-0000000010.h5"),
                                     "--checkpoint", path("across.h5")};
  const RunResult r = run_nn_dist(dir_, 2, across);
  expect_success(r);
  EXPECT_TRUE(contains(r.out, "whose products were bf16, continued in f32")) << describe(r);
  const RunResult init = run_nn_dist(dir_, 2, {"--data", shared().train, "--epochs", "1", "--init", path("a.h5"),
                                               "--checkpoint", path("from_init.h5")});
  expect_success(init);
  EXPECT_TRUE(contains(init.out, "trained with bf16 products; this run starts from its f32 weights with f32 products"))
      << describe(init);
}

TEST_F(E2eTest, ResumeAutoNeedsSomewhereToLookAndOneKindOfCheckpoint) {
  expect_clean_failure(dir_, 2, {"--data", shared().train, "--resume", "auto"}, {"--resume auto", "--checkpoint-dir"});
  expect_clean_failure(dir_, 2, {"--data", shared().train, "--checkpoint", path("a.h5"), "--checkpoint-dir", path("d")},
                       {"--checkpoint and --checkpoint-dir"});
  expect_clean_failure(dir_, 2, {"--data", shared().train, "--checkpoint-dir", path("no/such/dir")},
                       {"--checkpoint-dir", "cannot create"});
}

// ---- --early-stopping and --lr-schedule plateau

// nn_dist run from the folder `cwd` with paths relative to it: runs in two
// folders then have the same options (stored in /training), so their files can match byte for byte.
RunResult run_nn_dist_in(const std::string& cwd, int ranks, const std::vector<std::string>& args) {
  fs::create_directories(cwd);
  const std::string command = "cd " + quote(cwd) + " && exec " + mpirun_prefix(ranks) + " " + quote(NN_DIST_BIN) + joined(args);
  return run_shell(cwd, "sh -c " + quote(command));
}

// The "early stopping: ..." line's epochs: stopped after `stopped`, best `best`; false without the line.
bool early_stop_of(const std::string& out, long* stopped, long* best) {
  const std::vector<std::string> lines = lines_containing(out, "early stopping: ");
  if (lines.size() != 1) return false;
  const std::size_t at = lines[0].find("stopped after epoch ");
  return at != std::string::npos &&
         std::sscanf(lines[0].c_str() + at, "stopped after epoch %ld of %*d, best epoch %ld", stopped, best) == 2;
}

// Two checkpoints hold the same bits: parameters, momentum and every /training value. (Their
// bytes differ by HDF5's object times, seconds in each group's and dataset's header.)
void expect_same_checkpoint(const std::string& path, const std::string& expected_path) {
  const SavedRun got = read_saved(path, {2, 8, 3}), expected = read_saved(expected_path, {2, 8, 3});
  EXPECT_TRUE(same_bits(got.params, expected.params)) << path << ": the parameters differ";
  EXPECT_TRUE(same_bits(got.momentum, expected.momentum)) << path << ": the momentum differs";
  const TrainingState &a = got.state, &b = expected.state;
  EXPECT_EQ(a.epoch, b.epoch);
  EXPECT_EQ(a.global_step, b.global_step);
  EXPECT_EQ(a.epoch_step, b.epoch_step);
  EXPECT_EQ(a.options, b.options);
  EXPECT_EQ(a.run_id, b.run_id);
  EXPECT_EQ(a.has_early_stopping, b.has_early_stopping);
  EXPECT_EQ(a.early_stopping.best, b.early_stopping.best);
  EXPECT_EQ(a.early_stopping.best_epoch, b.early_stopping.best_epoch);
  EXPECT_EQ(a.early_stopping.wait, b.early_stopping.wait);
  EXPECT_EQ(checkpoint_run_id(path), checkpoint_run_id(expected_path));
}

// The best epoch a checkpoint's early stopping had seen (0: none).
int64_t read_saved_best_epoch(const std::string& path) {
  const Layout layout({2, 8, 3});
  Optimizer optimizer(OptimizerOptions{}, layout.total());
  return read_checkpoint_state(path, path, layout, optimizer).early_stopping.best_epoch;
}

std::vector<std::string> csv_rows(const std::string& path) {
  std::vector<std::string> rows = lines_of(file_bytes(path));
  if (!rows.empty()) rows.erase(rows.begin());  // the header
  return rows;
}

TEST_F(E2eTest, EarlyStoppingKeepsBestH5AndResumedRunsStopAtTheSameEpochWithTheSameBestH5) {
  // 400 samples on 2 ranks, batch 32: 7 steps per epoch. The training loss must fall by more than
  // --min-delta each epoch; it soon falls by less, and 3 epochs later the run stops.
  const std::vector<std::string> train{"--data", shared().train, "--val", shared().val, "--hidden", "8",
                                       "--epochs", "40", "--momentum", "0.9", "--early-stopping", "3",
                                       "--monitor", "loss", "--min-delta", "0.01"};
  const auto with = [&](std::vector<std::string> more) {
    more.insert(more.begin(), train.begin(), train.end());
    return more;
  };
  const std::vector<std::string> dir_args = with({"--checkpoint-dir", "ck", "--resume", "auto", "--checkpoint-every-steps",
                                                  "5", "--keep-checkpoints", "100", "--metrics", "m.csv"});
  const std::string a = path("a");
  const RunResult whole = run_nn_dist_in(a, 2, dir_args);
  expect_success(whole);
  long stopped = 0, best = 0;
  ASSERT_TRUE(early_stop_of(whole.out, &stopped, &best)) << describe(whole);
  EXPECT_EQ(stopped, best + 3) << "3 epochs without improvement";
  ASSERT_LT(stopped, 40) << describe(whole);
  ASSERT_GE(best, 3) << "the resumes below start before the best epoch: pick a smaller --min-delta";
  ASSERT_EQ(epoch_lines(whole.out).size(), static_cast<std::size_t>(stopped)) << describe(whole);
  // best.h5: the state at the best epoch's end; the last checkpoint: 3 epochs of waiting.
  const SavedRun saved_best = read_saved(a + "/ck/best.h5", {2, 8, 3});
  EXPECT_EQ(saved_best.state.epoch, best);
  EXPECT_EQ(saved_best.state.global_step, best * 7);
  ASSERT_TRUE(saved_best.state.has_early_stopping);
  EXPECT_EQ(saved_best.state.monitor, Monitor::kLoss);
  EXPECT_EQ(saved_best.state.early_stopping.best_epoch, best);
  EXPECT_EQ(saved_best.state.early_stopping.wait, 0);
  EXPECT_EQ(checkpoint_run_id(a + "/ck/best.h5"), checkpoint_run_id(a + "/ck/" + checkpoint_file_name(stopped * 7)));
  const SavedRun last = read_saved(a + "/ck/" + checkpoint_file_name(stopped * 7), {2, 8, 3});
  EXPECT_EQ(last.state.early_stopping.wait, 3);
  EXPECT_EQ(last.state.early_stopping.best_epoch, best);
  EXPECT_EQ(last.state.early_stopping.best, saved_best.state.early_stopping.best);
  // The CSV's best_epoch column: the best so far, B from epoch B on.
  const std::vector<std::string> rows = csv_rows(a + "/m.csv");
  ASSERT_EQ(rows.size(), static_cast<std::size_t>(stopped));
  for (long e = 1; e <= stopped; ++e) {
    const std::vector<std::string> cells = cells_of(rows[e - 1]);
    ASSERT_EQ(cells.size(), 10u) << rows[e - 1];
    if (e >= best) {
      EXPECT_EQ(cells[8], std::to_string(best)) << rows[e - 1];
    } else {
      EXPECT_LE(std::stol(cells[8]), e) << rows[e - 1];
    }
  }
  const FileSnapshot best_before(a + "/ck/best.h5");

  // Resumed in the middle of an epoch before the best one (its folder holds that checkpoint only):
  // the same epochs, the same stop, and best.h5 written again with the same bits.
  int64_t mid = (best * 7 - 1) / 5 * 5;
  if (mid % 7 == 0) mid -= 5;
  // Resumed at the end of the epoch after the best (wait 1), beside the best.h5 of then: the same stop, best.h5 untouched.
  const int64_t after = (best + 1) * 7;
  for (const int64_t step : {mid, after}) {
    SCOPED_TRACE("resumed from step " + std::to_string(step));
    const std::string b = path("from" + std::to_string(step));
    fs::create_directories(b + "/ck");
    fs::copy_file(a + "/ck/" + checkpoint_file_name(step), b + "/ck/" + checkpoint_file_name(step));
    if (step == after) fs::copy_file(a + "/ck/best.h5", b + "/ck/best.h5");
    ASSERT_EQ(read_saved(b + "/ck/" + checkpoint_file_name(step), {2, 8, 3}).state.epoch_step > 0, step == mid);
    const RunResult resumed = run_nn_dist_in(b, 2, dir_args);
    expect_success(resumed);
    long stopped_again = 0, best_again = 0;
    ASSERT_TRUE(early_stop_of(resumed.out, &stopped_again, &best_again)) << describe(resumed);
    EXPECT_EQ(stopped_again, stopped);
    EXPECT_EQ(best_again, best);
    const std::vector<std::string> all = epoch_lines_without_timing(whole.out), tail = epoch_lines_without_timing(resumed.out);
    ASSERT_LE(tail.size(), all.size());
    EXPECT_EQ(tail, std::vector<std::string>(all.end() - static_cast<long>(tail.size()), all.end()));
    expect_same_checkpoint(b + "/ck/best.h5", a + "/ck/best.h5");
    if (step == after) {  // no improvement after the resume: the copy of then is left as it was
      EXPECT_TRUE(file_bytes(b + "/ck/best.h5") == best_before.bytes) << "best.h5 was rewritten";
    }
  }

  // nn_eval reads best.h5 as the checkpoint it is: its validation loss is epoch B's.
  const RunResult eval = run_shell(dir_, quote(NN_EVAL_BIN) + " --model " + quote(a + "/ck/best.h5") + " --data " +
                                             quote(shared().val));
  ASSERT_EQ(eval.code, 0) << describe(eval);
  const double val_loss = std::atof(cells_of(rows[best - 1])[3].c_str());
  const std::vector<std::string> loss_lines = lines_containing(eval.out, "loss ");
  ASSERT_FALSE(loss_lines.empty()) << describe(eval);
  EXPECT_NEAR(std::atof(loss_lines.back().c_str() + loss_lines.back().find("loss ") + 5), val_loss, 1e-6)
      << "epoch " << best << "'s val_loss\n" << describe(eval);

  // --checkpoint FILE --restore-best: the same training ends FILE with best.h5's weights.
  const RunResult restored = run_nn_dist(dir_, 2, with({"--checkpoint", path("r.h5"), "--restore-best"}));
  expect_success(restored);
  EXPECT_TRUE(contains(restored.out, "r.h5 holds its weights")) << describe(restored);
  const SavedRun r = read_saved(path("r.h5"), {2, 8, 3});
  EXPECT_TRUE(same_bits(r.params, saved_best.params)) << "r.h5's /model is not the best epoch's";
  EXPECT_FALSE(same_bits(r.params, last.params)) << "the best and the last weights are the same: the test shows nothing";
  EXPECT_EQ(r.state.epoch, stopped);
  // Interrupted after the best epoch, its file holds the last weights in /model and the best in
  // /best; the resumed run still ends with the best.
  int64_t cut = (best * 7 / 5 + 1) * 5;
  if (cut % 7 == 0) cut += 5;
  ASSERT_LT(cut, stopped * 7);
  const RunResult cut_short = run_nn_dist(dir_, 2, with({"--checkpoint", path("r2.h5"), "--restore-best",
                                                         "--checkpoint-every-steps", "5", "--max-steps",
                                                         std::to_string(cut)}));
  expect_success(cut_short);
  EXPECT_FALSE(same_bits(read_saved(path("r2.h5"), {2, 8, 3}).params, saved_best.params)) << "not the last weights";
  const RunResult rest = run_nn_dist(dir_, 2, with({"--checkpoint", path("r2.h5"), "--restore-best", "--resume",
                                                    path("r2.h5")}));
  expect_success(rest);
  long stopped_rest = 0, best_rest = 0;
  ASSERT_TRUE(early_stop_of(rest.out, &stopped_rest, &best_rest)) << describe(rest);
  EXPECT_EQ(stopped_rest, stopped);
  EXPECT_EQ(best_rest, best);
  EXPECT_TRUE(same_bits(read_saved(path("r2.h5"), {2, 8, 3}).params, saved_best.params))
      << "the resumed --restore-best run did not end with the best epoch's weights";

  // --keep-checkpoints 1 prunes the numbered files, never best.h5; --resume auto takes the numbered one.
  const std::string k = path("k");
  const std::vector<std::string> keep_one = with({"--checkpoint-dir", k, "--keep-checkpoints", "1", "--resume", "auto"});
  expect_success(run_nn_dist(dir_, 2, keep_one));
  EXPECT_EQ(names_in(k), (std::vector<std::string>{"best.h5", checkpoint_file_name(stopped * 7)}));
  const RunResult again = run_nn_dist(dir_, 2, keep_one);
  expect_success(again);
  EXPECT_TRUE(contains(again.out, "nothing to do: early stopping ended this run after epoch " + std::to_string(stopped)))
      << describe(again);
  std::vector<std::string> more_patience = keep_one;
  *std::find(more_patience.begin(), more_patience.end(), "--early-stopping") = "--early-stopping=4";
  more_patience.erase(std::find(more_patience.begin(), more_patience.end(), "--early-stopping=4") + 1);
  const RunResult longer = run_nn_dist(dir_, 2, more_patience);
  expect_success(longer);
  EXPECT_TRUE(contains(longer.out, checkpoint_file_name(stopped * 7))) << describe(longer);
  EXPECT_FALSE(contains(longer.out, "resuming from " + k + "/best.h5")) << describe(longer);
}

TEST_F(E2eTest, EarlyStoppingThatCannotWorkIsOneLineAndChangesNothing) {
  // val_accuracy of a regression: found once the data is read, by every rank.
  const std::string reg = path("reg.h5"), reg_val = path("reg_val.h5");
  ASSERT_EQ(run_datagen(dir_, {"--kind", "regression", "--samples", "200", "--val-samples", "100", "--out", reg,
                               "--val-out", reg_val}).code, 0);
  expect_clean_failure(dir_, 2, {"--data", reg, "--val", reg_val, "--hidden", "8", "--early-stopping", "2",
                                 "--monitor", "val_accuracy"},
                       {"--monitor val_accuracy", "mse", "no accuracy"});
  // A folder holding another run's best.h5: refused at the start, not at the first improvement.
  const std::vector<std::string> train{"--data", shared().train, "--hidden", "8", "--early-stopping", "2"};
  const auto with = [&](std::vector<std::string> more) {
    more.insert(more.begin(), train.begin(), train.end());
    return more;
  };
  expect_success(run_nn_dist(dir_, 2, with({"--epochs", "2", "--checkpoint-dir", path("first")})));
  ASSERT_TRUE(fs::is_regular_file(path("first/best.h5")));
  fs::create_directories(path("second"));
  fs::copy_file(path("first/best.h5"), path("second/best.h5"));
  const TreeSnapshot before(path("second"));
  expect_clean_failure(dir_, 2, with({"--epochs", "2", "--checkpoint-dir", path("second")}),
                       {"--checkpoint-dir", "best.h5", "not one of this run's checkpoints"});
  expect_tree_unchanged(before, path("second"));
  // --restore-best continuing a run saved without the best weights.
  const std::string from = path("first/" + checkpoint_file_name(14));
  ASSERT_GT(read_saved_best_epoch(from), 0);
  expect_clean_failure(dir_, 2, with({"--epochs", "3", "--resume", from, "--checkpoint", path("r.h5"), "--restore-best"}),
                       {"--resume", "no best weights", "without --restore-best"});
  EXPECT_FALSE(fs::exists(path("r.h5")));
}

TEST_F(E2eTest, PlateauCutsTheLrInTheMetricsCsvAsTorchsRuleSaysAndResumesExactly) {
  // Global batch 64, --lr 0.5 x 64/32: peak lr 1.0 after one epoch of warmup; the loss soon stops
  // improving by 1e-4 (relative) and the lr halves after 2 epochs without, but not below 0.3.
  const std::vector<std::string> args{"--data", shared().train, "--hidden", "8", "--epochs", "20", "--momentum", "0.9",
                                      "--lr", "0.5", "--lr-scaling", "linear", "--lr-reference-batch", "32",
                                      "--warmup-epochs", "1", "--lr-schedule", "plateau", "--plateau-patience", "1",
                                      "--plateau-factor", "0.5", "--plateau-min-lr", "0.3", "--monitor", "loss"};
  const auto with = [&](std::vector<std::string> more) {
    more.insert(more.begin(), args.begin(), args.end());
    return more;
  };
  const RunResult whole = run_nn_dist(dir_, 2, with({"--metrics", path("m.csv"), "--checkpoint-dir", path("ck"),
                                                     "--keep-checkpoints", "100"}));
  expect_success(whole);
  const std::vector<std::string> rows = csv_rows(path("m.csv"));
  ASSERT_EQ(rows.size(), 20u);
  // ReduceLROnPlateau's rule (mode min, threshold 1e-4 rel, cooldown 0), written out again over the CSV's losses.
  double lr = 1.0, best_loss = INFINITY;
  long bad = 0, cuts = 0;
  for (std::size_t e = 0; e < rows.size(); ++e) {
    const std::vector<std::string> cells = cells_of(rows[e]);
    ASSERT_EQ(cells.size(), 10u) << rows[e];
    EXPECT_EQ(std::atof(cells[7].c_str()), lr) << "epoch " << e + 1 << ": " << rows[e];
    EXPECT_EQ(cells[8], "") << "no --early-stopping: no best epoch";
    const double loss = std::atof(cells[1].c_str());
    if (loss < best_loss * (1 - 1e-4)) {
      best_loss = loss;
      bad = 0;
    } else if (++bad > 1) {
      bad = 0;
      if (lr - std::max(lr * 0.5, 0.3) > 1e-8) {
        lr = std::max(lr * 0.5, 0.3);
        ++cuts;
      }
    }
  }
  ASSERT_GE(cuts, 2) << "the loss did not level off: the test shows nothing\n" << file_bytes(path("m.csv"));
  EXPECT_EQ(lines_containing(whole.out, "plateau: lr ").size(), static_cast<std::size_t>(cuts)) << describe(whole);
  // /training holds the plateau's state; an epoch-end resume after the first cut, and a mid-epoch
  // one, continue with the uninterrupted run's lrs and losses.
  EXPECT_EQ(lr, 0.3) << "the second cut is clamped at --plateau-min-lr";
  const SavedRun end = read_saved(path("ck/" + checkpoint_file_name(20 * 7)), {2, 8, 3});
  ASSERT_TRUE(end.state.has_plateau);
  EXPECT_EQ(end.state.plateau.lr, lr);
  EXPECT_EQ(end.state.schedule.schedule, LrSchedule::kPlateau);
  EXPECT_EQ(end.state.schedule.plateau_factor, 0.5);
  long first_cut = 0;
  for (std::size_t e = 1; e < rows.size() && first_cut == 0; ++e) {
    if (cells_of(rows[e])[7] != cells_of(rows[0])[7]) first_cut = static_cast<long>(e);  // epochs before the cut
  }
  for (const int64_t step : {first_cut * 7, first_cut * 7 + 3}) {
    SCOPED_TRACE("resumed from step " + std::to_string(step));
    const std::string csv = path("resumed" + std::to_string(step) + ".csv");
    std::vector<std::string> resume_args = with({"--metrics", csv});
    if (step % 7 != 0) {  // a mid-epoch checkpoint of the same run
      const RunResult stepped = run_nn_dist(dir_, 2, with({"--checkpoint-dir", path("ck_steps"), "--checkpoint-every-steps",
                                                           std::to_string(step), "--max-steps", std::to_string(step)}));
      expect_success(stepped);
      resume_args.insert(resume_args.end(), {"--resume", path("ck_steps/" + checkpoint_file_name(step))});
    } else {
      resume_args.insert(resume_args.end(), {"--resume", path("ck/" + checkpoint_file_name(step))});
    }
    const RunResult resumed = run_nn_dist(dir_, 2, resume_args);
    expect_success(resumed);
    const std::vector<std::string> mine = csv_rows(csv);
    ASSERT_FALSE(mine.empty());
    for (const std::string& row : mine) {
      std::vector<std::string> cells = cells_of(row), theirs = cells_of(rows[std::stoul(cells[0]) - 1]);
      for (std::vector<std::string>* c : {&cells, &theirs}) (*c)[5] = (*c)[6] = "";
      EXPECT_EQ(cells, theirs) << row;
    }
  }
}

}  // namespace
}  // namespace nn_dist::e2e
