// Numbered checkpoints in a folder: naming, listing, choosing, pruning.
#include "nn_dist/io/checkpoint_dir.hpp"

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "h5util.hpp"
#include "nn_dist/common/error.hpp"
#include "nn_dist/io/checkpoint.hpp"

namespace nn_dist {

namespace fs = std::filesystem;

namespace {
constexpr const char* kPrefix = "ckpt-";
constexpr const char* kSuffix = ".h5";

}  // namespace

bool is_checkpoint_name(const std::string& name) {
  const std::size_t p = std::char_traits<char>::length(kPrefix), s = std::char_traits<char>::length(kSuffix);
  if (name.size() <= p + s || name.compare(0, p, kPrefix) != 0 || name.compare(name.size() - s, s, kSuffix) != 0) {
    return false;
  }
  const std::string digits = name.substr(p, name.size() - p - s);
  return digits.find_first_not_of("0123456789") == std::string::npos;
}

std::string checkpoint_file_name(int64_t global_step) {
  char name[64];
  std::snprintf(name, sizeof name, "%s%010lld%s", kPrefix, static_cast<long long>(global_step), kSuffix);
  return name;
}

std::vector<std::string> list_checkpoints(const std::string& dir, const std::string& what) {
  std::vector<std::string> found;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    std::error_code kind;
    if (is_checkpoint_name(name) && it->is_regular_file(kind)) found.push_back(it->path().string());
  }
  if (ec == std::errc::not_a_directory) throw Error(what + ": is not a folder");
  if (ec) throw Error(what + ": cannot list the folder (" + ec.message() + ")");
  // Names hold the step zero-padded, but a step beyond 10 digits is longer: sort by length, then name.
  std::sort(found.begin(), found.end(), [](const std::string& a, const std::string& b) {
    return a.size() != b.size() ? a.size() < b.size() : a < b;
  });
  return found;
}

std::string newest_valid_checkpoint(const std::string& dir, const std::string& what,
                                    std::vector<std::string>* warnings) {
  const std::vector<std::string> all = list_checkpoints(dir, what);
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    try {
      // The model's description and the groups a resume needs; the tensors
      // themselves are checked in full when the resume reads them.
      read_checkpoint_model(*it, *it);
      h5::Handle file = h5::open_file(*it, *it);
      if (!h5::exists(file.get(), "training") || !h5::exists(file.get(), "optimizer")) {
        throw Error(*it + ": has no /training or /optimizer group");
      }
      return *it;
    } catch (const Error& e) {
      warnings->push_back(e.what());
    }
  }
  return "";
}

void prune_checkpoints(const std::string& dir, const std::string& what, long keep,
                       const std::vector<NamedPath>& protect) {
  const std::vector<std::string> all = list_checkpoints(dir, what);
  const long excess = static_cast<long>(all.size()) - keep;
  for (long i = 0; i < excess; ++i) {
    const bool is_input = std::any_of(protect.begin(), protect.end(), [&](const NamedPath& p) {
      return !p.path.empty() && same_file(p.path, all[i]);
    });
    std::error_code ec;
    if (!is_input) fs::remove(all[i], ec);
  }
}

}  // namespace nn_dist
