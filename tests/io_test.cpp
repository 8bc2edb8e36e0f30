// HDF5 shards (ranges, hyperslab reads, type conversion, bad files) and
// checkpoint round trips, including that a failed write keeps the old file.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>

#include <sys/stat.h>
#include <unistd.h>

#include "nn_dist/common/error.hpp"
#include "nn_dist/common/text.hpp"
#include "nn_dist/io/checkpoint.hpp"
#include "nn_dist/io/checkpoint_dir.hpp"
#include "nn_dist/io/dataset.hpp"
#include "nn_dist/io/files.hpp"
#include "nn_dist/io/names.hpp"
#include "test_util.hpp"

namespace nn_dist {
namespace {

std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST(ShardTest, RangesCoverAllRowsAndDifferByAtMostOne) {
  for (long n : {1L, 7L, 10L, 1001L}) {
    for (int p = 1; p <= 5 && p <= n; ++p) {
      long next = 0, smallest = n, largest = 0;
      for (int r = 0; r < p; ++r) {
        long offset = 0, count = 0;
        shard_range(n, p, r, &offset, &count);
        EXPECT_EQ(offset, next);
        next = offset + count;
        smallest = std::min(smallest, count);
        largest = std::max(largest, count);
      }
      EXPECT_EQ(next, n);
      EXPECT_LE(largest - smallest, 1);
    }
  }
}

TEST(ShardTest, HyperslabReadReturnsTheRightRows) {
  const testing::TempDir temp("io");
  const std::string& dir = temp.str();
  const long n = 11, d = 3;
  Matrix<float> x(d, n);
  Matrix<double> y(1, n);
  for (long j = 0; j < n; ++j) {
    for (long i = 0; i < d; ++i) x(i, j) = static_cast<float>(100 * j + i);
    y(0, j) = static_cast<double>(j % 4);
  }
  for (StoredType type : {StoredType::kFloat32, StoredType::kFloat64, StoredType::kInt32}) {
    const std::string path = dir + "/d.h5";
    write_dataset(path, x, y, true, type);
    const DatasetInfo info = inspect_dataset(path, "--data d.h5", "X", "y");
    EXPECT_EQ(info.samples, n);
    EXPECT_EQ(info.features, d);
    EXPECT_TRUE(info.integer_targets);
    const Shard shard = read_shard(info, 4, 5);
    ASSERT_EQ(shard.x.cols(), 5);
    for (long j = 0; j < 5; ++j) {
      for (long i = 0; i < d; ++i) EXPECT_EQ(shard.x(i, j), static_cast<float>(100 * (j + 4) + i));
      EXPECT_EQ(shard.y(0, j), static_cast<double>((j + 4) % 4));
    }
    const Targets t = make_targets(info, shard, Loss::kSoftmax);
    EXPECT_EQ(t.max_label, 3);
  }
}

TEST(ShardTest, BadFilesGiveErrorsNamingTheFile) {
  const testing::TempDir temp("io_bad");
  const std::string& dir = temp.str();
  EXPECT_THROW(inspect_dataset(dir + "/missing.h5", "--data missing.h5", "X", "y"), Error);
  EXPECT_THROW(inspect_dataset(dir, "--data dir", "X", "y"), Error);
  std::ofstream(dir + "/text.h5") << "not hdf5\n";
  try {
    inspect_dataset(dir + "/text.h5", "--data text.h5", "X", "y");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--data text.h5: not an HDF5 file"), std::string::npos) << e.what();
  }
  Matrix<float> x(2, 3);
  x.setZero();
  Matrix<double> y(1, 3);
  y << 0, -1, 2;
  write_dataset(dir + "/neg.h5", x, y, true);
  const DatasetInfo info = inspect_dataset(dir + "/neg.h5", "--data neg.h5", "X", "y");
  EXPECT_THROW(make_targets(info, read_shard(info, 0, 3), Loss::kSoftmax), Error);
  x(1, 2) = std::numeric_limits<float>::quiet_NaN();
  y << 0, 1, 2;
  write_dataset(dir + "/nan.h5", x, y, true);
  const DatasetInfo nan_info = inspect_dataset(dir + "/nan.h5", "--data nan.h5", "X", "y");
  EXPECT_NO_THROW(read_shard(nan_info, 0, 2));  // the NaN is outside this shard
  EXPECT_THROW(read_shard(nan_info, 2, 1), Error);
}

TEST(CheckpointTest, RoundTripRestoresEverything) {
  const testing::TempDir temp("ckpt");
  const std::string& dir = temp.str();
  const Layout layout({5, 4, 3});
  FlatBuffer params;
  testing::random_params(layout, 4, 1.0, params);
  OptimizerOptions options;
  options.kind = OptimizerKind::kAdam;
  Optimizer opt(options, layout.total());
  for (float* s : opt.state()) {
    FlatBuffer values;
    testing::random_params(layout, 5, 1.0, values);
    std::copy(values.begin(), values.end(), s);
  }
  // exp_avg_sq is a mean of squares: a negative value is refused on load.
  std::transform(opt.state()[1], opt.state()[1] + opt.size(), opt.state()[1], [](float v) { return std::fabs(v); });
  opt.set_step(17);
  TrainingState state;
  state.epoch = 3;
  state.global_step = 17;
  state.seed = 99;
  state.ranks = 2;
  state.options = "lr = 0.1\n";
  state.epoch_step = 5;  // saved mid-epoch
  state.epoch_sums.loss = 12.5;
  state.epoch_sums.correct = 7;
  state.epoch_sums.count = 20;
  state.global_batch = 4;
  state.samples = 80;
  const std::string path = dir + "/ck.h5";
  write_checkpoint(path, layout, Activation::kTanh, Loss::kSoftmax, params.data(), opt, state);

  const CheckpointModel m = read_checkpoint_model(path, "--init ck.h5");
  EXPECT_EQ(m.sizes, (std::vector<long>{5, 4, 3}));
  EXPECT_EQ(m.activation, "tanh");
  EXPECT_EQ(m.loss, "softmax");
  FlatBuffer back(layout.total());
  read_checkpoint_params(path, "--init ck.h5", layout, back.data());
  EXPECT_EQ(back, params);
  Optimizer opt2(options, layout.total());
  const TrainingState s2 = read_checkpoint_state(path, "--resume ck.h5", layout, opt2);
  EXPECT_EQ(s2.epoch, 3);
  EXPECT_EQ(s2.global_step, 17);
  EXPECT_EQ(s2.seed, 99u);
  EXPECT_EQ(s2.options, "lr = 0.1\n");
  EXPECT_EQ(s2.epoch_step, 5);
  EXPECT_EQ(s2.epoch_sums.loss, 12.5);
  EXPECT_EQ(s2.epoch_sums.correct, 7);
  EXPECT_EQ(s2.epoch_sums.count, 20);
  EXPECT_EQ(s2.global_batch, 4);
  EXPECT_EQ(s2.samples, 80);
  EXPECT_EQ(opt2.step(), 17);
  for (std::size_t i = 0; i < 2; ++i) {
    EXPECT_TRUE(std::equal(opt.state()[i], opt.state()[i] + opt.size(), opt2.state()[i])) << "state " << i;
  }
  // No temporary file is left beside it.
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir), {}), 1);
}

// leaky_relu's slope lives in /model (leaky_slope) and AdamW's state under its own
// name: a resume with another optimizer is refused, not continued with Adam's rule.
TEST(CheckpointTest, LeakySlopeAndAdamWRoundTrip) {
  const testing::TempDir temp("ckpt_adamw");
  const std::string& dir = temp.str();
  const Layout layout({4, 3, 2});
  FlatBuffer params;
  testing::random_params(layout, 6, 1.0, params);
  OptimizerOptions options;
  options.kind = OptimizerKind::kAdamW;
  options.weight_decay = 0.01;
  Optimizer opt(options, layout.total());
  for (float* s : opt.state()) std::fill(s, s + opt.size(), 0.25f);
  opt.set_step(3);
  const std::string path = dir + "/ck.h5";
  write_checkpoint(path, layout, ActivationFn(Activation::kLeakyRelu, 0.3), Loss::kSoftmax, params.data(), opt,
                   TrainingState{});
  const CheckpointModel m = read_checkpoint_model(path, "--init ck.h5");
  EXPECT_EQ(m.activation, "leaky_relu");
  EXPECT_EQ(m.leaky_slope, 0.3);
  Optimizer back(options, layout.total());
  read_checkpoint_state(path, "--resume ck.h5", layout, back);
  EXPECT_EQ(back.step(), 3);
  EXPECT_EQ(back.state()[1][0], 0.25f);
  OptimizerOptions adam = options;
  adam.kind = OptimizerKind::kAdam;
  Optimizer other(adam, layout.total());
  EXPECT_EQ(testing::error_of([&] { read_checkpoint_state(path, "--resume ck.h5", layout, other); }),
            "--resume ck.h5: was written by optimizer 'adamw', but this run uses --optimizer adam");
  // Other activations carry no slope.
  write_checkpoint(path, layout, Activation::kGelu, Loss::kSoftmax, params.data(), opt, TrainingState{});
  EXPECT_EQ(read_checkpoint_model(path, "--init ck.h5").activation, "gelu");
}

// The header's length and checksum catch every flipped bit and every cut,
// wherever it falls; a file without the header (another tool's) passes unchecked.
TEST(CheckpointTest, ChecksumFindsAnyFlippedBitAndAnyCut) {
  const testing::TempDir temp("ckpt_sum");
  const std::string& dir = temp.str();
  const Layout layout({6, 5, 2});
  FlatBuffer params;
  testing::random_params(layout, 8, 1.0, params);
  Optimizer opt(OptimizerOptions{}, layout.total());
  const std::string path = dir + "/ck.h5";
  write_checkpoint(path, layout, Activation::kRelu, Loss::kSoftmax, params.data(), opt, TrainingState{});
  EXPECT_TRUE(verify_checkpoint_file(path, "ck"));
  const std::string good = file_bytes(path);
  const auto write = [&](const std::string& bytes) { std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes; };
  for (std::size_t at = 512; at < good.size(); at += 97) {  // a bit in every stretch of the file after the header
    std::string bad = good;
    bad[at] = static_cast<char>(bad[at] ^ (1 << (at % 8)));
    write(bad);
    try {
      verify_checkpoint_file(path, "ck");
      ADD_FAILURE() << "a flipped bit at byte " << at << " went unnoticed";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("ck: is damaged"), std::string::npos) << e.what();
    }
  }
  for (std::size_t cut : {std::size_t{1}, std::size_t{100}, good.size() / 2}) {
    write(good.substr(0, good.size() - cut));
    try {
      verify_checkpoint_file(path, "ck");
      ADD_FAILURE() << "a cut of " << cut << " bytes went unnoticed";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("ck: is truncated"), std::string::npos) << e.what();
    }
  }
  std::string unsealed = good;
  std::fill(unsealed.begin(), unsealed.begin() + 512, '\0');
  write(unsealed);
  EXPECT_FALSE(verify_checkpoint_file(path, "ck"));
  FlatBuffer back(layout.total());
  read_checkpoint_params(path, "ck", layout, back.data());
  EXPECT_EQ(back, params);
}

TEST(CheckpointTest, FailedWriteLeavesTheOldCheckpoint) {
  const testing::TempDir temp("ckpt_fail");
  const std::string& dir = temp.str();
  const Layout layout({2, 2});
  FlatBuffer params(layout.total(), 1.0f);
  Optimizer opt(OptimizerOptions{}, layout.total());
  const std::string path = dir + "/ck.h5";
  write_checkpoint(path, layout, Activation::kRelu, Loss::kMse, params.data(), opt, TrainingState{});
  const std::string before = file_bytes(path);
  // The target is now a directory's child that cannot be created: rename must fail.
  std::filesystem::create_directory(dir + "/blocker");
  std::ofstream(dir + "/blocker/x") << "x";
  EXPECT_THROW(write_checkpoint(dir + "/blocker", layout, Activation::kRelu, Loss::kMse, params.data(), opt,
                                TrainingState{}),
               Error);
  EXPECT_THROW(write_checkpoint(dir + "/no_such_dir/ck.h5", layout, Activation::kRelu, Loss::kMse, params.data(),
                                opt, TrainingState{}),
               Error);
  EXPECT_EQ(file_bytes(path), before);
  EXPECT_TRUE(std::filesystem::exists(dir + "/blocker/x"));
}

TEST(CheckpointTest, DatasetFileIsNotACheckpoint) {
  const testing::TempDir temp("ckpt_not");
  const std::string& dir = temp.str();
  Matrix<float> x = Matrix<float>::Zero(2, 3);
  Matrix<double> y = Matrix<double>::Zero(1, 3);
  write_dataset(dir + "/d.h5", x, y, true);
  try {
    read_checkpoint_model(dir + "/d.h5", "--init d.h5");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not an nn_dist checkpoint"), std::string::npos) << e.what();
  }
}


using testing::error_of;
using testing::has;

TEST(FilesTest, OutputsThatNameAnInputAreFoundByIdentityNotByName) {
  namespace fs = std::filesystem;
  const testing::TempDir temp("files_alias");
  const std::string& dir = temp.str();
  const std::string data = dir + "/d.h5";
  std::ofstream(data) << "data";
  fs::create_directory(dir + "/sub");
  fs::create_symlink(data, dir + "/link.h5");
  fs::create_hard_link(data, dir + "/hard.h5");
  const std::vector<NamedPath> inputs{{"--data", data}, {"--val", ""}};
  for (const std::string& alias : {data, dir + "/./d.h5", dir + "/sub/../d.h5", dir + "/link.h5", dir + "/hard.h5"}) {
    const std::string message =
        error_of([&] { require_distinct_files(inputs, {{"--checkpoint", alias}}, {}); });
    EXPECT_TRUE(has(message, "--checkpoint " + alias + ": is the same file as --data")) << alias << ": " << message;
  }
  // Another file, and the allowed pair, pass.
  EXPECT_EQ(error_of([&] { require_distinct_files(inputs, {{"--checkpoint", dir + "/ck.h5"}}, {}); }), "");
  EXPECT_EQ(error_of([&] {
              require_distinct_files({{"--resume", data}}, {{"--checkpoint", dir + "/hard.h5"}},
                                     {{"--checkpoint", "--resume"}});
            }),
            "");
  // Two outputs that do not exist yet, named differently.
  const std::string both = error_of([&] {
    require_distinct_files(inputs, {{"--checkpoint", dir + "/out"}, {"--metrics", dir + "/sub/../out"}}, {});
  });
  EXPECT_TRUE(has(both, "--metrics") && has(both, "same file as --checkpoint")) << both;
}

TEST(FilesTest, SpecialFilesAreRefusedBeforeAnythingOpensThem) {
  const testing::TempDir temp("files_special");
  const std::string& dir = temp.str();
  const std::string fifo = dir + "/fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0644), 0);
  // Opening a FIFO for reading would block this test forever: the check must not open it.
  EXPECT_TRUE(has(error_of([&] { require_input_file(fifo, "--data fifo"); }), "--data fifo: is a FIFO"));
  EXPECT_TRUE(has(error_of([&] { require_output_file(fifo, "--metrics fifo"); }), "--metrics fifo: is a FIFO"));
  EXPECT_TRUE(has(error_of([&] { require_input_file("/dev/null", "--data x"); }), "character device"));
  EXPECT_TRUE(has(error_of([&] { require_output_file("/dev/null", "--checkpoint x"); }), "character device"));
  EXPECT_TRUE(has(error_of([&] { require_input_file(dir, "--config x"); }), "is a directory"));
  EXPECT_TRUE(has(error_of([&] { require_input_file(dir + "/none", "--data x"); }), "file not found"));
  EXPECT_TRUE(has(error_of([&] { require_output_file(dir + "/no/ck.h5", "--checkpoint x"); }), "does not exist"));
  EXPECT_EQ(error_of([&] { require_output_file(dir + "/ck.h5", "--checkpoint x"); }), "");
  // The probe left nothing behind.
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir), {}), 1);
}

TEST(FilesTest, AtomicWriteReplacesWholeOrNotAtAll) {
  const testing::TempDir temp("files_atomic");
  const std::string& dir = temp.str();
  const std::string path = dir + "/f";
  write_file_atomically(path, "first", 5, "--checkpoint f");
  EXPECT_EQ(file_bytes(path), "first");
  write_file_atomically(path, "second!", 7, "--checkpoint f");
  EXPECT_EQ(file_bytes(path), "second!");
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir), {}), 1);
  // A target that cannot be replaced (a non-empty folder): an error, and no temporary file.
  std::filesystem::create_directories(dir + "/full/x");
  const std::string message = error_of([&] { write_file_atomically(dir + "/full", "x", 1, "--checkpoint full"); });
  EXPECT_TRUE(has(message, "--checkpoint full: renaming")) << message;
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir), {}), 2);
}

TEST(FilesTest, StaleTemporariesOfDeadProcessesOnThisHostAreRemoved) {
  const testing::TempDir temp("files_stale");
  const std::string& dir = temp.str();
  char host[256] = {0};
  ::gethostname(host, sizeof host - 1);
  const std::string mine = dir + "/.ck.h5.tmp." + host + "." + std::to_string(::getpid());
  const std::string dead = dir + "/.ck.h5.tmp." + host + ".999999999";
  const std::string other_host = dir + "/.ck.h5.tmp.elsewhere.999999999";
  const std::string other_file = dir + "/.x.h5.tmp." + host + ".999999999";
  for (const std::string& p : {mine, dead, other_host, other_file}) std::ofstream(p) << "x";
  EXPECT_EQ(remove_stale_temporaries(dir + "/ck.h5"), std::vector<std::string>{dead});
  for (const std::string& p : {mine, other_host, other_file}) EXPECT_TRUE(std::filesystem::exists(p)) << p;
  // A folder of numbered checkpoints: every checkpoint's leftovers, no other file's.
  const std::string numbered = dir + "/.ckpt-0000000042.h5.tmp." + host + ".999999999";
  std::ofstream(numbered) << "x";
  EXPECT_EQ(remove_stale_temporaries(dir, is_checkpoint_name), std::vector<std::string>{numbered});
  for (const std::string& p : {mine, other_host, other_file}) EXPECT_TRUE(std::filesystem::exists(p)) << p;
}

TEST(NamesTest, MismatchesAreOneLineNamingBothFilesAndUnnamedListsAreNotCompared) {
  const DataNames train{{"x", "y"}, {"ant", "bee"}};
  const auto mismatch = [&](const DataNames& other) {
    return error_of([&] { require_same_names(other, "--val v.h5", train, "--data t.h5"); });
  };
  EXPECT_EQ(mismatch(train), "");
  EXPECT_EQ(mismatch(DataNames{}), "");                // unnamed: compared by count elsewhere
  EXPECT_EQ(mismatch(DataNames{{}, {"ant", "bee"}}), "");  // features unnamed, classes equal
  EXPECT_EQ(mismatch(DataNames{{"x", "z"}, {}}),
            "--val v.h5: feature 1 is 'z' here but 'y' in --data t.h5 ('feature_names' differ: the features must be "
            "the same, in the same order)");
  const std::string classes = mismatch(DataNames{{}, {"bee", "ant"}});
  EXPECT_TRUE(has(classes, "--val v.h5: its classes ('label_names': bee, ant) are not those of --data t.h5 (ant, bee)"))
      << classes;
  EXPECT_TRUE(has(mismatch(DataNames{{}, {"ant"}}), "('label_names': ant) are not those of"));  // a class fewer
  const DataNames merged = names_or(DataNames{{}, {"cat"}}, train);
  EXPECT_EQ(merged.features, train.features);
  EXPECT_EQ(merged.labels, std::vector<std::string>{"cat"});
  std::vector<std::string> many;
  for (int i = 0; i < 12; ++i) many.push_back("c" + std::to_string(i));
  EXPECT_EQ(names_text(many), "c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, ... (12 in all)");
}

TEST(NamesTest, CheckpointRecordsTheNamesAndOneWithoutThemIsUnnamed) {
  const testing::TempDir temp("names");
  const std::string& dir = temp.str();
  const Layout layout({3, 4, 2});
  FlatBuffer params;
  testing::random_params(layout, 4, 1.0, params);
  Optimizer opt(OptimizerOptions{}, layout.total());
  TrainingState state;
  state.names = {{"alcohol", "ash", "hue"}, {"no", "yes"}};
  write_checkpoint(dir + "/named.h5", layout, Activation::kRelu, Loss::kSoftmax, params.data(), opt, state);
  const CheckpointModel named = read_checkpoint_model(dir + "/named.h5", "--model named.h5");
  EXPECT_EQ(named.names.features, state.names.features);
  EXPECT_EQ(named.names.labels, state.names.labels);
  write_checkpoint(dir + "/unnamed.h5", layout, Activation::kRelu, Loss::kSoftmax, params.data(), opt, TrainingState{});
  const CheckpointModel unnamed = read_checkpoint_model(dir + "/unnamed.h5", "--model unnamed.h5");
  EXPECT_TRUE(unnamed.names.features.empty() && unnamed.names.labels.empty());
  // Names that do not fit the model: one per input, one per softmax output.
  state.names.features.pop_back();
  write_checkpoint(dir + "/short.h5", layout, Activation::kRelu, Loss::kSoftmax, params.data(), opt, state);
  EXPECT_EQ(error_of([&] { read_checkpoint_model(dir + "/short.h5", "--init short.h5"); }),
            "--init short.h5: '/model/feature_names' holds 2 names for 3 features");
  state.names = {{}, {"a", "b", "c"}};
  write_checkpoint(dir + "/three.h5", layout, Activation::kRelu, Loss::kSoftmax, params.data(), opt, state);
  EXPECT_EQ(error_of([&] { read_checkpoint_model(dir + "/three.h5", "--init three.h5"); }),
            "--init three.h5: '/model/label_names' holds 3 names for 2 classes");
}

TEST(TextTest, PrintableBoundsAndEscapesButKeepsUtf8) {
  EXPECT_EQ(printable("plain"), "plain");
  EXPECT_EQ(printable("donn\xc3\xa9" "es.h5"), "donn\xc3\xa9" "es.h5");
  EXPECT_EQ(printable(std::string("a\x1b[2J\x00\xff", 7)), "a\\x1b[2J\\x00\\xff");
  EXPECT_EQ(printable(std::string(100, 'z'), 10), "zzzzzzzzzz... (100 bytes)");
  // Characters that print as nothing would hide in a file name: a byte-order
  // mark, a zero-width space, a right-to-left override, a C1 control.
  EXPECT_EQ(printable("\xef\xbb\xbftrain.h5"), "\\xef\\xbb\\xbftrain.h5");
  EXPECT_EQ(printable("a\xe2\x80\x8b" "b"), "a\\xe2\\x80\\x8b" "b");
  EXPECT_EQ(printable("x\xe2\x80\xaeh5.exe"), "x\\xe2\\x80\\xaeh5.exe");
  EXPECT_EQ(printable("c\xc2\x85" "d"), "c\\xc2\\x85" "d");
  const std::string visible = "\xe2\x82\xac \xe4\xb8\xad \xf0\x9f\x98\x80";  // euro sign, a CJK character, an emoji
  EXPECT_EQ(printable(visible), visible);
}

}  // namespace
}  // namespace nn_dist
