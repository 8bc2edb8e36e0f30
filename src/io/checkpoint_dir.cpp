// Numbered checkpoints in a folder: naming, listing, choosing, claiming the
// folder for one run, pruning that run's own files.
#include "nn_dist/io/checkpoint_dir.hpp"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <limits>

#include "io/h5util.hpp"
#include "nn_dist/common/error.hpp"
#include "nn_dist/common/text.hpp"
#include "nn_dist/io/checkpoint.hpp"

namespace nn_dist {

namespace fs = std::filesystem;

namespace {
constexpr const char* kPrefix = "ckpt-";
constexpr const char* kSuffix = ".h5";

std::string file_name(const std::string& path) { return fs::path(path).filename().string(); }

// The step in a checkpoint's name (names longer than int64_t saturate).
int64_t step_of(const std::string& path) {
  const std::string name = file_name(path);
  int64_t step = 0;
  for (std::size_t i = std::char_traits<char>::length(kPrefix); i < name.size() && name[i] >= '0' && name[i] <= '9';
       ++i) {
    const int digit = name[i] - '0';
    if (step > (std::numeric_limits<int64_t>::max() - digit) / 10) return std::numeric_limits<int64_t>::max();
    step = step * 10 + digit;
  }
  return step;
}

// Whether --resume auto could continue from path: its model's description
// and the groups a resume needs (the tensors are checked in full when a
// resume reads them). If not, *why says what is wrong.
bool resumable(const std::string& path, std::string* why) {
  try {
    read_checkpoint_model(path, path);
    h5::Handle file = h5::open_file(path, path);
    if (!h5::exists(file.get(), "training") || !h5::exists(file.get(), "optimizer")) {
      throw Error(path + ": has no /training or /optimizer group");
    }
    return true;
  } catch (const Error& e) {
    *why = e.what();
    return false;
  }
}

// "ckpt-0000000064.h5", or "ckpt-0000000064.h5 to ckpt-0000000128.h5, 3 files".
std::string names_of(const std::vector<std::string>& names) {
  if (names.size() == 1) return names[0];
  return names.front() + " to " + names.back() + ", " + std::to_string(names.size()) + " files";
}

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
  // Every kind of file: one that is not a checkpoint but has a checkpoint's name is in the way all the same.
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (is_checkpoint_name(name)) found.push_back(it->path().string());
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
    std::string why;
    if (resumable(*it, &why)) return *it;
    warnings->push_back(why);
  }
  return "";
}

void claim_checkpoint_dir(const std::string& dir, const std::string& what, const std::string& run_id,
                          int64_t first_step, int64_t last_step) {
  std::vector<std::string> others;
  for (const std::string& path : list_checkpoints(dir, what)) {
    const std::string id = checkpoint_run_id(path), name = file_name(path);
    const int64_t step = step_of(path);
    std::string why;
    if (!id.empty() && id != run_id) {
      others.push_back(name);
    } else if (step <= first_step) {
      continue;  // never written by this run, and --resume auto takes this run's newer ones first
    } else if (resumable(path, &why)) {
      if (id.empty()) {
        others.push_back(name);  // an older nn_dist's or another tool's: --resume auto would take it
        continue;
      }
      throw Error(what + ": holds " + name + ", a later checkpoint of the run continued here from step " +
                  std::to_string(first_step) + "; continuing from the earlier one would overwrite it: continue from "
                  "the newest (--resume auto), or give this continuation a folder of its own");
    } else if (id.empty() && step <= last_step) {
      throw Error(what + ": holds " + name + ", which is not a checkpoint of this run and has a name it may write "
                  "(steps " + std::to_string(first_step + 1) + " to " + std::to_string(last_step) +
                  "): move it out of the folder (" + printable(why, 200) + ")");
    }
  }
  if (!others.empty()) {
    throw Error(what + ": holds checkpoints of another run (" + names_of(others) + "); a checkpoint folder belongs "
                "to one run: continue that run with --resume auto, or give this run a folder of its own");
  }
}

void require_own_or_absent(const std::string& path, const std::string& what, const std::string& run_id) {
  if (!path_exists(path, what) || checkpoint_run_id(path) == run_id) return;
  throw Error(what + ": " + file_name(path) + " is not one of this run's checkpoints (another run writing into the "
              "same folder?); it was not overwritten");
}

void require_no_checkpoint_names(const std::string& dir, const std::string& what,
                                 const std::vector<NamedPath>& outputs) {
  for (const NamedPath& out : outputs) {
    const fs::path p(out.path);
    if (out.path.empty() || !is_checkpoint_name(p.filename().string())) continue;
    if (same_file(p.has_parent_path() ? p.parent_path().string() : ".", dir)) {
      throw Error(out.flag + " " + printable(out.path, 200) + ": has the name of a checkpoint of " + what +
                  ", which would replace it at step " + std::to_string(step_of(out.path)) + "; give it another name");
    }
  }
}

void prune_checkpoints(const std::string& dir, const std::string& what, const std::string& run_id, int64_t newest,
                       long keep, const std::vector<NamedPath>& protect) {
  std::vector<std::string> own;
  for (const std::string& path : list_checkpoints(dir, what)) {
    if (step_of(path) <= newest && checkpoint_run_id(path) == run_id) own.push_back(path);
  }
  const long excess = static_cast<long>(own.size()) - keep;
  for (long i = 0; i < excess; ++i) {
    const bool is_input = std::any_of(protect.begin(), protect.end(), [&](const NamedPath& p) {
      return !p.path.empty() && same_file(p.path, own[i]);
    });
    std::error_code ec;
    if (!is_input) fs::remove(own[i], ec);
  }
}

}  // namespace nn_dist
