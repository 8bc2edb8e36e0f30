// The names of an enum's values as one table, for a flag and the files that
// store the value: name <-> value, the "expected a, b or c" list, and the
// error naming the flag with the user's text escaped (common/text.hpp).
#pragma once

#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "nn_dist/common/error.hpp"
#include "nn_dist/common/text.hpp"

namespace nn_dist {

template <typename Value>
class NameTable {
 public:
  // flag: the option that takes these names, e.g. "--activation"; entries in
  // the order the "expected" list names them.
  NameTable(std::string flag, std::initializer_list<std::pair<Value, const char*>> entries)
      : flag_(std::move(flag)), entries_(entries) {}

  const std::string& flag() const { return flag_; }

  // The value named `text`, or false.
  bool find(const std::string& text, Value* value) const {
    for (const auto& [v, entry_name] : entries_) {
      if (text == entry_name) {
        *value = v;
        return true;
      }
    }
    return false;
  }

  // The value named `text`; throws Error "<flag>: unknown value '<text>' (expected a, b or c)".
  Value parse(const std::string& text) const {
    Value value{};
    if (!find(text, &value)) throw Error(flag_ + ": unknown value '" + printable(text) + "' (expected " + expected() + ")");
    return value;
  }

  // The name of `value` ("?" for a value outside the table).
  std::string name(Value value) const {
    for (const auto& [v, entry_name] : entries_) {
      if (v == value) return entry_name;
    }
    return "?";
  }

  // "a, b or c".
  std::string expected() const {
    std::string list;
    for (std::size_t i = 0; i < entries_.size(); ++i) {
      list += std::string(i == 0 ? "" : i + 1 == entries_.size() ? " or " : ", ") + entries_[i].second;
    }
    return list;
  }

 private:
  std::string flag_;
  std::vector<std::pair<Value, const char*>> entries_;
};

}  // namespace nn_dist
