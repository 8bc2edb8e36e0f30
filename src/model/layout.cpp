// Flat parameter layout: W1, b1, W2, b2, ... each padded to 64 bytes.
#include "nn_dist/model/layout.hpp"

#include <algorithm>
#include <sstream>

#include "nn_dist/common/error.hpp"
#include "nn_dist/common/text.hpp"

namespace nn_dist {

namespace {
std::size_t round_up(std::size_t n) { return (n + kTensorAlign - 1) / kTensorAlign * kTensorAlign; }
}  // namespace

Layout::Layout(std::vector<long> sizes) : sizes_(std::move(sizes)) {
  if (sizes_.size() < 2) throw Error("a network needs at least an input and an output layer");
  for (long d : sizes_) {
    if (d <= 0) throw Error("layer widths must be positive, got " + sizes_string(sizes_));
  }
  for (std::size_t l = 0; l + 1 < sizes_.size(); ++l) {
    weights_.push_back({total_, sizes_[l + 1], sizes_[l]});
    total_ += round_up(weights_.back().size());
    biases_.push_back({total_, sizes_[l + 1], 1});
    total_ += round_up(biases_.back().size());
  }
}

std::size_t Layout::num_parameters() const {
  std::size_t n = 0;
  for (int l = 0; l < num_layers(); ++l) n += weights_[l].size() + biases_[l].size();
  return n;
}

long Layout::max_width() const { return *std::max_element(sizes_.begin(), sizes_.end()); }

std::vector<long> parse_hidden(const std::string& text) {
  std::vector<long> widths;
  if (text.empty() || text == "none") return widths;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    long width = 0;
    if (!whole_number(item, &width)) {
      throw Error("--hidden " + text + ": '" + item + "' is not a whole number (expected e.g. --hidden 128,64 or --hidden none)");
    }
    if (width <= 0) throw Error("--hidden " + text + ": width " + item + " must be positive");
    if (width > kMaxWidth) throw Error("--hidden " + text + ": width " + item + " is beyond any layer nn_dist can train");
    widths.push_back(width);
  }
  if (!text.empty() && text.back() == ',') throw Error("--hidden: '" + text + "' ends with a comma");
  return widths;
}

void line_part(std::size_t total, std::size_t part, std::size_t parts, std::size_t* begin, std::size_t* end) {
  const std::size_t lines = (total + kTensorAlign - 1) / kTensorAlign;
  *begin = std::min(total, lines * part / parts * kTensorAlign);
  *end = std::min(total, lines * (part + 1) / parts * kTensorAlign);
}

std::string sizes_string(const std::vector<long>& sizes) {
  std::string s;
  for (std::size_t i = 0; i < sizes.size(); ++i) s += (i ? "-" : "") + std::to_string(sizes[i]);
  return s;
}

}  // namespace nn_dist
