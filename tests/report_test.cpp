// nn_eval's reports (eval/report.hpp): JSON numbers and strings, and both
// layouts of a small classification and regression, to the character.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "nn_dist/eval/report.hpp"

namespace nn_dist {
namespace {

TEST(ReportTest, JsonNumbersAndStrings) {
  EXPECT_EQ(json_number(std::nan("")), "null");
  EXPECT_EQ(json_number(std::numeric_limits<double>::infinity()), "1e308");
  EXPECT_EQ(json_number(-std::numeric_limits<double>::infinity()), "-1e308");
  EXPECT_EQ(json_number(0.1), "0.1");
  EXPECT_EQ(json_string("a\"b\\c\x01\n"), "\"a\\\"b\\\\c\\u0001\\u000a\"");
}

TEST(ReportTest, ClassificationInBothLayouts) {
  const ReportHeader header{"test.h5", "2-4-2 (softmax)", 4};
  const std::vector<double> confusion{2, 0, 1, 1};  // true 0: 2 right; true 1: 1 taken for 0, 1 right
  EXPECT_EQ(classification_report(header, 2.0, 3, confusion, 2, true),
            "{\"samples\":4,\"model\":\"2-4-2 (softmax)\",\"task\":\"classification\",\"loss\":0.5,\"accuracy\":0.75,"
            "\"classes\":[{\"class\":0,\"precision\":0.6666666667,\"recall\":1,\"f1\":0.8,\"support\":2},"
            "{\"class\":1,\"precision\":1,\"recall\":0.5,\"f1\":0.6666666667,\"support\":2}],"
            "\"macro\":{\"precision\":0.8333333333,\"recall\":0.75,\"f1\":0.7333333333},\"confusion\":[[2,0],[1,1]]}\n");
  EXPECT_EQ(classification_report(header, 2.0, 3, confusion, 2, false),
            "nn_eval: test.h5: 4 samples, model 2-4-2 (softmax), 2 classes\n"
            "loss 0.500000  accuracy 0.750000\n\n"
            "class     precision     recall         f1    support\n"
            "0            0.6667     1.0000     0.8000          2\n"
            "1            1.0000     0.5000     0.6667          2\n"
            "macro        0.8333     0.7500     0.7333          4\n\n"
            "confusion matrix (rows: true class, columns: predicted)\n"
            "               0       1\n"
            "       0       2       0\n"
            "       1       1       1\n");
}

TEST(ReportTest, RegressionInBothLayouts) {
  const ReportHeader header{std::string(600, 'd'), "3-2 (mse)", 2};  // a long path is printed whole
  RegressionSums sums;
  sums.abs_error = {1, 2};
  sums.sq_error = {1, 4};
  sums.sq_deviation = {2, 8};
  EXPECT_EQ(regression_report(header, 1.25, sums, 2, true),
            "{\"samples\":2,\"model\":\"3-2 (mse)\",\"task\":\"regression\",\"loss\":1.25,\"mse\":1.25,\"mae\":0.75,"
            "\"r2\":[0.5,0.5],\"r2_mean\":0.5}\n");
  EXPECT_EQ(regression_report(header, 1.25, sums, 2, false),
            "nn_eval: " + std::string(600, 'd') + ": 2 samples, model 3-2 (mse), 2 target(s)\n"
            "loss 1.250000 (training's: mean of |h - y|^2 / 2)  mse 1.250000  mae 0.750000  r2 0.500000\n"
            "  target 0: r2 0.500000\n  target 1: r2 0.500000\n");
}

}  // namespace
}  // namespace nn_dist
