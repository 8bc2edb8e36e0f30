// The enum name tables (common/name_table.hpp): every name of each flag's
// table parses to a value that prints as the same name, and a wrong name is
// one error naming the flag, the user's text escaped and the names expected.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "nn_dist/math/activation.hpp"
#include "nn_dist/math/loss.hpp"
#include "nn_dist/model/gemm.hpp"
#include "nn_dist/optim/monitor.hpp"
#include "nn_dist/optim/optimizer.hpp"
#include "nn_dist/optim/schedule.hpp"
#include "test_util.hpp"

namespace nn_dist {
namespace {

using testing::error_of;

// Each name round-trips through parse and name; "bad\x01" is refused with the expected list.
template <typename Value>
void expect_table(const NameTable<Value>& table, const std::vector<std::string>& names, const std::string& expected) {
  for (const std::string& name : names) {
    EXPECT_EQ(table.name(table.parse(name)), name) << table.flag();
  }
  EXPECT_EQ(table.expected(), expected);
  EXPECT_EQ(error_of([&] { table.parse("bad\x01"); }),
            table.flag() + ": unknown value 'bad\\x01' (expected " + expected + ")");
  Value value{};
  EXPECT_FALSE(table.find("", &value)) << table.flag();
}

TEST(NamesTest, EveryFlagsTableParsesPrintsAndRefuses) {
  expect_table(activation_names(), {"relu", "tanh", "sigmoid", "identity", "gelu", "gelu_tanh", "silu", "leaky_relu"},
               "relu, tanh, sigmoid, identity, gelu, gelu_tanh, silu or leaky_relu");
  expect_table(loss_names(), {"softmax", "logistic", "mse"}, "softmax, logistic or mse");
  expect_table(optimizer_names(), {"sgd", "adam", "adamw"}, "sgd, adam or adamw");
  expect_table(lr_schedule_names(), {"constant", "step", "cosine", "plateau"}, "constant, step, cosine or plateau");
  expect_table(monitor_names(), {"val_loss", "val_accuracy", "loss"}, "val_loss, val_accuracy or loss");
  expect_table(lr_scaling_names(), {"none", "linear", "sqrt"}, "none, linear or sqrt");
  expect_table(gemm_kernel_names(), {"auto", "avx512", "avx2", "eigen", "amx", "avx512_bf16"}, "auto, avx512, avx2, eigen, amx or avx512_bf16");
}

TEST(NamesTest, ParseAndNameFunctionsUseTheTables) {
  EXPECT_EQ(parse_activation("tanh"), Activation::kTanh);
  EXPECT_EQ(activation_name(Activation::kSigmoid), "sigmoid");
  EXPECT_EQ(parse_loss("mse"), Loss::kMse);
  EXPECT_EQ(parse_optimizer("adam"), OptimizerKind::kAdam);
  EXPECT_EQ(optimizer_name(OptimizerKind::kSgd), "sgd");
  EXPECT_EQ(parse_gemm_kernel("eigen"), GemmKernel::kEigen);
  EXPECT_EQ(error_of([] { parse_loss("hinge"); }), "--loss: unknown value 'hinge' (expected softmax, logistic or mse)");
  // A long value is shortened, not printed whole.
  const std::string message = error_of([] { parse_activation(std::string(5000, 'x')); });
  EXPECT_LT(message.size(), 200u) << message;
  EXPECT_NE(message.find("(5000 bytes)"), std::string::npos) << message;
}

}  // namespace
}  // namespace nn_dist
