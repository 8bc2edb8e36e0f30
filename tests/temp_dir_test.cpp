// testing::TempDir, the folder every test that writes files works in: made in
// TMPDIR, and removed with all it holds on every way out of a test, so that
// no run, passed or failed, leaves files behind.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "test_util.hpp"

namespace nn_dist {
namespace {

namespace fs = std::filesystem;

// A folder with a file and a subfolder in it, as the tests leave theirs.
void fill(const testing::TempDir& dir) {
  fs::create_directories(dir.path() / "sub");
  std::ofstream(dir.path() / "sub" / "data.h5") << "data";
  std::ofstream(dir.str() + "/ck.h5") << "checkpoint";
}

TEST(TempDirTest, IsMadeInTheTempDirAndRemovedWithItsContentsAtTheEndOfItsScope) {
  std::string made;
  {
    const testing::TempDir dir("temp_dir");
    made = dir.str();
    fill(dir);
  }
  // temp_directory_path is TMPDIR when set: run_tests.sh finds what a test leaves there.
  EXPECT_EQ(fs::path(made).parent_path(), fs::temp_directory_path()) << made;
  EXPECT_EQ(fs::path(made).filename().string().rfind("nn_dist_temp_dir_", 0), 0u) << made;
  EXPECT_FALSE(fs::exists(made)) << made;
}

// What a failed ASSERT does: return from the test body.
std::string made_then_returned_early() {
  const testing::TempDir dir("temp_dir_early");
  fill(dir);
  if (fs::exists(dir.path() / "ck.h5")) return dir.str();
  ADD_FAILURE() << "the folder was not filled";
  return dir.str();
}

TEST(TempDirTest, IsRemovedOnAnEarlyReturnAndOnAnException) {
  const std::string early = made_then_returned_early();
  EXPECT_FALSE(early.empty());
  EXPECT_FALSE(fs::exists(early)) << early;

  std::string thrown;
  try {
    const testing::TempDir dir("temp_dir_thrown");
    thrown = dir.str();
    fill(dir);
    throw Error("a failed step");
  } catch (const Error&) {
  }
  EXPECT_FALSE(thrown.empty());
  EXPECT_FALSE(fs::exists(thrown)) << thrown;
}

}  // namespace
}  // namespace nn_dist
