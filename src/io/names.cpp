// Comparing the names two files give their features and classes (saying in
// one line where they part), and reading and writing them in HDF5 files.
#include "nn_dist/io/names.hpp"

#include "io/h5util.hpp"
#include "io/names_h5.hpp"
#include "nn_dist/common/error.hpp"
#include "nn_dist/common/text.hpp"

namespace nn_dist {

std::string names_text(const std::vector<std::string>& names) {
  std::string text;
  for (std::size_t i = 0; i < names.size() && i < 10; ++i) text += (i ? ", " : "") + printable(names[i], 40);
  if (names.size() > 10) text += ", ... (" + std::to_string(names.size()) + " in all)";
  return text;
}

void require_same_names(const DataNames& a, const std::string& a_what, const DataNames& b, const std::string& b_what) {
  if (!a.features.empty() && !b.features.empty() && a.features != b.features) {
    if (a.features.size() != b.features.size()) {
      throw Error(a_what + ": names " + std::to_string(a.features.size()) + " features ('feature_names'), but " +
                  b_what + " names " + std::to_string(b.features.size()));
    }
    std::size_t i = 0;
    while (a.features[i] == b.features[i]) ++i;
    throw Error(a_what + ": feature " + std::to_string(i) + " is '" + printable(a.features[i], 60) + "' here but '" +
                printable(b.features[i], 60) + "' in " + b_what +
                " ('feature_names' differ: the features must be the same, in the same order)");
  }
  if (!a.labels.empty() && !b.labels.empty() && a.labels != b.labels) {
    throw Error(a_what + ": its classes ('label_names': " + names_text(a.labels) + ") are not those of " + b_what +
                " (" + names_text(b.labels) + "), so a label number would mean another class; number them alike "
                "(nn_convert csv --classes-from FILE takes FILE's classes)");
  }
}

DataNames names_or(const DataNames& a, const DataNames& b) {
  DataNames out = a;
  if (out.features.empty()) out.features = b.features;
  if (out.labels.empty()) out.labels = b.labels;
  return out;
}

DataNames read_names(hid_t loc, const std::string& what, const std::string& where) {
  DataNames names;
  if (h5::exists(loc, "feature_names")) names.features = h5::read_strings(loc, "feature_names", what, where + "feature_names");
  if (h5::exists(loc, "label_names")) names.labels = h5::read_strings(loc, "label_names", what, where + "label_names");
  return names;
}

void require_names_fit(const DataNames& names, long features, long classes, const std::string& what,
                       const std::string& where) {
  const auto fit = [&](const std::vector<std::string>& list, long count, const char* name, const char* of) {
    if (list.empty() || count == 0 || static_cast<long>(list.size()) == count) return;
    throw Error(what + ": '" + where + name + "' holds " + std::to_string(list.size()) + " names for " +
                std::to_string(count) + " " + of);
  };
  fit(names.features, features, "feature_names", "features");
  fit(names.labels, classes, "label_names", "classes");
}

void write_names(hid_t loc, const DataNames& names) {
  if (!names.features.empty()) h5::write_strings(loc, "feature_names", names.features);
  if (!names.labels.empty()) h5::write_strings(loc, "label_names", names.labels);
}

}  // namespace nn_dist
