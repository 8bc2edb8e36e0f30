// Hostile but plausible command lines against the real nn_dist under mpirun:
// outputs that alias inputs, special files, stray arguments, hand-edited
// checkpoints, absurd sizes, full and read-only disks, signals during
// checkpoint writes. Each ends in one clear line, exit code 2 on every rank,
// no crash, no hang, and every file compared byte for byte afterwards. And a
// stop signal during MPI_Init: a checkpoint after the first step, exit 75.
#include <hdf5.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <unistd.h>

#include <memory>

#include "e2e_util.hpp"
#include "nn_dist/io/files.hpp"

namespace nn_dist::e2e {
namespace {

// ---- files the cases are made of

// A copy of the shared training data in dir (a case may try to destroy it).
std::string local_data(const std::string& dir) {
  const std::string p = dir + "/d.h5";
  if (!fs::exists(p)) fs::copy_file(shared().train, p);
  return p;
}

std::string local_checkpoint(const std::string& dir, const std::string& name = "mine.h5") {
  const std::string p = dir + "/" + name;
  fs::copy_file(shared().checkpoint, p, fs::copy_options::overwrite_existing);
  return p;
}

std::string make_fifo(const std::string& dir, const std::string& name) {
  const std::string p = dir + "/" + name;
  EXPECT_EQ(::mkfifo(p.c_str(), 0644), 0) << p;
  return p;
}

// A UNIX socket file: the listening socket is closed, the file stays.
std::string make_socket(const std::string& dir, const std::string& name) {
  const std::string p = dir + "/" + name;
  const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", p.c_str());
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0) << p;
  ::close(fd);
  return p;
}

// A device node like /dev/full, made in dir so that a broken nn_dist could
// only ever replace this copy, never the machine's own.
std::string make_device(const std::string& dir, const std::string& name) {
  const std::string p = dir + "/" + name;
  if (::mknod(p.c_str(), S_IFCHR | 0666, makedev(1, 7)) != 0) {
    // Without CAP_MKNOD, the real /dev/full: as an output it must be refused all the same.
    return "/dev/full";
  }
  return p;
}

std::string make_symlink(const std::string& dir, const std::string& name, const std::string& target) {
  const std::string p = dir + "/" + name;
  fs::create_symlink(target, p);
  return p;
}

// ---- hand-edited checkpoints (HDF5 C API)

void replace_dataset(const std::string& file, const std::string& name, const std::vector<hsize_t>& dims,
                     hid_t type, const std::vector<double>& values) {
  const hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(f, 0) << file;
  if (H5Lexists(f, name.c_str(), H5P_DEFAULT) > 0) H5Ldelete(f, name.c_str(), H5P_DEFAULT);
  add_dataset(f, name, dims, type, values);
  H5Fclose(f);
  drop_checksum(file);
}

// Reads a float dataset of a checkpoint (row-major) and its shape.
std::vector<double> read_dataset(const std::string& file, const std::string& name, std::vector<hsize_t>* dims) {
  const hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  const hid_t ds = H5Dopen2(f, name.c_str(), H5P_DEFAULT);
  const hid_t space = H5Dget_space(ds);
  dims->assign(H5Sget_simple_extent_ndims(space), 0);
  H5Sget_simple_extent_dims(space, dims->data(), nullptr);
  std::vector<double> v(H5Sget_simple_extent_npoints(space));
  H5Dread(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data());
  H5Sclose(space);
  H5Dclose(ds);
  H5Fclose(f);
  return v;
}

// Rewrites one element of a dataset, keeping its shape and type.
void poke(const std::string& file, const std::string& name, std::size_t index, double value) {
  std::vector<hsize_t> dims;
  std::vector<double> v = read_dataset(file, name, &dims);
  ASSERT_LT(index, v.size());
  v[index] = value;
  replace_dataset(file, name, dims, H5T_IEEE_F32LE, v);
}

void set_attr(const std::string& file, const std::string& object, const std::string& name, hid_t file_type,
              hid_t mem_type, const void* values, hsize_t count) {
  const hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(f, 0) << file;
  const hid_t obj = H5Oopen(f, object.c_str(), H5P_DEFAULT);
  if (H5Aexists(obj, name.c_str()) > 0) H5Adelete(obj, name.c_str());
  const hid_t space = H5Screate_simple(1, &count, nullptr);
  const hid_t attr = H5Acreate2(obj, name.c_str(), file_type, space, H5P_DEFAULT, H5P_DEFAULT);
  EXPECT_GE(H5Awrite(attr, mem_type, values), 0) << name;
  H5Aclose(attr);
  H5Sclose(space);
  H5Oclose(obj);
  H5Fclose(f);
  drop_checksum(file);
}

void set_int_attr(const std::string& file, const std::string& object, const std::string& name,
                  std::vector<long long> values) {
  set_attr(file, object, name, H5T_STD_I64LE, H5T_NATIVE_LLONG, values.data(), values.size());
}

// A string attribute in either HDF5 form: fixed-length ASCII (nn_dist's own)
// or variable-length UTF-8 (h5py's default).
void set_string_attr(const std::string& file, const std::string& object, const std::string& name,
                     const std::string& value, bool variable_length) {
  const hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(f, 0) << file;
  const hid_t obj = H5Oopen(f, object.c_str(), H5P_DEFAULT);
  if (H5Aexists(obj, name.c_str()) > 0) H5Adelete(obj, name.c_str());
  const hid_t type = H5Tcopy(H5T_C_S1);
  H5Tset_size(type, variable_length ? H5T_VARIABLE : value.size());
  if (variable_length) H5Tset_cset(type, H5T_CSET_UTF8);
  const hid_t space = H5Screate(H5S_SCALAR);
  const hid_t attr = H5Acreate2(obj, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT);
  const char* text = value.c_str();
  EXPECT_GE(variable_length ? H5Awrite(attr, type, &text) : H5Awrite(attr, type, value.data()), 0) << name;
  H5Aclose(attr);
  H5Sclose(space);
  H5Tclose(type);
  H5Oclose(obj);
  H5Fclose(f);
  drop_checksum(file);
}

// A good checkpoint trained with Adam (its state includes exp_avg_sq).
std::string adam_checkpoint(const std::string& dir) {
  const std::string p = dir + "/adam.h5";
  const RunResult r = run_nn_dist(dir, 2, {"--data", shared().train, "--hidden", "8", "--epochs", "1", "--optimizer",
                                           "adam", "--checkpoint", p, "--quiet"});
  EXPECT_EQ(r.code, 0) << describe(r);
  return p;
}

// ---- the cases: each prepares its files in dir and returns nn_dist's flags

struct HostileCase {
  std::string name;
  std::function<std::vector<std::string>(const std::string& dir)> prepare;
  std::vector<std::string> expected;  // words the error line must contain
  bool also_three_ranks = false;
  std::vector<std::string> forbidden = {};  // words it must not contain
};

std::ostream& operator<<(std::ostream& os, const HostileCase& c) { return os << c.name; }

using Args = std::vector<std::string>;

// Flags on a local copy of the training data (3 classes, 2 features).
Args on_data(const std::string& dir, Args flags) {
  Args args{"--data", local_data(dir), "--epochs", "1"};
  if (std::find(flags.begin(), flags.end(), "--hidden") == flags.end()) args.insert(args.end(), {"--hidden", "8"});
  args.insert(args.end(), flags.begin(), flags.end());
  return args;
}

// A checkpoint edited by `edit`, given to --init or --resume.
HostileCase checkpoint_case(const std::string& name, const std::string& flag,
                            std::function<void(const std::string& ck)> edit, std::vector<std::string> expected,
                            bool three = false, bool adam = false) {
  return {name,
          [=](const std::string& dir) {
            const std::string ck = adam ? adam_checkpoint(dir) : local_checkpoint(dir);
            edit(ck);
            Args flags{flag, ck};
            if (adam) flags.insert(flags.end(), {"--optimizer", "adam"});
            return on_data(dir, flags);
          },
          expected,
          three,
          {"diverged", "--lr"}};
}

std::vector<HostileCase> alias_cases() {
  return {
      {"CheckpointIsTheData", [](const std::string& d) { return on_data(d, {"--checkpoint", d + "/d.h5"}); },
       {"--checkpoint", "same file as --data", "input"}, true},
      {"CheckpointIsTheDataThroughDotSlash",
       [](const std::string& d) {
         local_data(d);
         fs::create_directory(d + "/sub");
         return on_data(d, {"--checkpoint", d + "/./sub/../d.h5"});
       },
       {"--checkpoint", "same file as --data"}},
      {"CheckpointIsASymlinkToTheData",
       [](const std::string& d) { return on_data(d, {"--checkpoint", make_symlink(d, "link.h5", local_data(d))}); },
       {"--checkpoint", "link.h5", "same file as --data"}},
      {"CheckpointIsAHardLinkToTheData",
       [](const std::string& d) {
         fs::create_hard_link(local_data(d), d + "/hard.h5");
         return on_data(d, {"--checkpoint", d + "/hard.h5"});
       },
       {"--checkpoint", "hard.h5", "same file as --data"}, true},
      {"CheckpointIsTheValidationSet",
       [](const std::string& d) {
         fs::copy_file(shared().val, d + "/v.h5");
         return on_data(d, {"--val", d + "/v.h5", "--checkpoint", d + "/v.h5"});
       },
       {"--checkpoint", "same file as --val"}},
      {"CheckpointIsTheConfig",
       [](const std::string& d) {
         write_text(d + "/run.ini", "epochs = 1\n");
         return on_data(d, {"--config", d + "/run.ini", "--checkpoint", d + "/run.ini"});
       },
       {"--checkpoint", "same file as --config"}},
      {"CheckpointIsTheInitCheckpoint",
       [](const std::string& d) {
         const std::string ck = local_checkpoint(d);
         return on_data(d, {"--init", ck, "--checkpoint", ck});
       },
       {"--checkpoint", "same file as --init"}, true},
      {"MetricsIsTheCheckpoint",
       [](const std::string& d) {
         const std::string ck = local_checkpoint(d);
         return on_data(d, {"--checkpoint", ck, "--metrics", ck});
       },
       {"--metrics", "same file as --checkpoint"}, true},
      {"MetricsIsTheResumedCheckpoint",
       [](const std::string& d) {
         const std::string ck = local_checkpoint(d);
         return on_data(d, {"--resume", ck, "--checkpoint", ck, "--metrics", ck});
       },
       {"--metrics", "same file as"}},
      {"MetricsIsTheData", [](const std::string& d) { return on_data(d, {"--metrics", d + "/d.h5"}); },
       {"--metrics", "same file as --data"}},
      {"MetricsIsTheConfig",
       [](const std::string& d) {
         write_text(d + "/run.ini", "epochs = 1\n");
         return on_data(d, {"--config", d + "/run.ini", "--metrics", d + "/run.ini"});
       },
       {"--metrics", "same file as --config"}},
      {"MetricsAndCheckpointAreOneNewFile",
       [](const std::string& d) { return on_data(d, {"--checkpoint", d + "/out", "--metrics", d + "/./out"}); },
       {"--metrics", "same file as --checkpoint", "own file"}, true},
  };
}

std::vector<HostileCase> special_file_cases() {
  return {
      {"DataIsAFifo", [](const std::string& d) { return Args{"--data", make_fifo(d, "fifo.h5"), "--hidden", "8"}; },
       {"--data", "fifo.h5", "FIFO"}, true},
      {"ValIsAFifo", [](const std::string& d) { return on_data(d, {"--val", make_fifo(d, "v.h5")}); },
       {"--val", "FIFO"}},
      {"ConfigIsAFifo", [](const std::string& d) { return on_data(d, {"--config", make_fifo(d, "run.ini")}); },
       {"--config", "FIFO"}, true, {"not found"}},
      {"InitIsAFifo", [](const std::string& d) { return on_data(d, {"--init", make_fifo(d, "ck_in.h5")}); },
       {"--init", "FIFO"}},
      {"ResumeIsAFifo", [](const std::string& d) { return on_data(d, {"--resume", make_fifo(d, "ck_in.h5")}); },
       {"--resume", "FIFO"}},
      {"DataIsACharacterDevice", [](const std::string&) { return Args{"--data", "/dev/zero", "--hidden", "8"}; },
       {"--data", "/dev/zero", "character device"}},
      {"DataIsASocket", [](const std::string& d) { return Args{"--data", make_socket(d, "sock"), "--hidden", "8"}; },
       {"--data", "socket"}},
      {"DataIsADanglingSymlink",
       [](const std::string& d) { return Args{"--data", make_symlink(d, "gone.h5", d + "/nowhere.h5"), "--hidden", "8"}; },
       {"--data", "symbolic link", "does not exist"}},
      {"ConfigIsADirectory",
       [](const std::string& d) {
         fs::create_directory(d + "/conf.d");
         return on_data(d, {"--config", d + "/conf.d"});
       },
       {"--config", "directory"}, false, {"not found"}},
      {"CheckpointIsADevice", [](const std::string& d) { return on_data(d, {"--checkpoint", make_device(d, "full")}); },
       {"--checkpoint", "character device"}, true},
      {"MetricsIsADevice", [](const std::string& d) { return on_data(d, {"--metrics", make_device(d, "full")}); },
       {"--metrics", "character device"}},
      {"CheckpointIsAFifo", [](const std::string& d) { return on_data(d, {"--checkpoint", make_fifo(d, "out")}); },
       {"--checkpoint", "FIFO"}},
      {"MetricsIsAFifo", [](const std::string& d) { return on_data(d, {"--metrics", make_fifo(d, "m.csv")}); },
       {"--metrics", "FIFO"}, true},
      {"CheckpointIsASocket", [](const std::string& d) { return on_data(d, {"--checkpoint", make_socket(d, "s")}); },
       {"--checkpoint", "socket"}},
      {"CheckpointIsADirectory",
       [](const std::string& d) {
         fs::create_directory(d + "/ckdir");
         return on_data(d, {"--checkpoint", d + "/ckdir"});
       },
       {"--checkpoint", "directory"}},
      {"CheckpointEndsWithASlash", [](const std::string& d) { return on_data(d, {"--checkpoint", d + "/new/"}); },
       {"--checkpoint", "'/'"}},
      {"CheckpointIsADanglingSymlink",
       [](const std::string& d) { return on_data(d, {"--checkpoint", make_symlink(d, "ck_link", d + "/gone/ck.h5")}); },
       {"--checkpoint", "symbolic link", "does not exist"}},
  };
}

std::vector<HostileCase> argument_cases() {
  return {
      {"HiddenWidthsSeparatedBySpace", [](const std::string& d) { return on_data(d, {"--hidden", "64", "32"}); },
       {"unexpected argument '32'", "--hidden"}, true},
      {"StrayFileName", [](const std::string& d) { return on_data(d, {"extra.h5"}); },
       {"unexpected argument 'extra.h5'"}},
      {"ArgumentsAfterDoubleDash", [](const std::string& d) { return on_data(d, {"--", "--epochs", "5"}); },
       {"unexpected argument '--epochs'"}},
      {"EmptyCheckpointPath", [](const std::string& d) { return on_data(d, {"--checkpoint", ""}); },
       {"--checkpoint", "empty"}, true},
      {"EmptyMetricsPath", [](const std::string& d) { return on_data(d, {"--metrics", ""}); },
       {"--metrics", "empty"}},
      {"EmptyPathInConfig",
       [](const std::string& d) {
         write_text(d + "/run.ini", "metrics =\n");
         return on_data(d, {"--config", d + "/run.ini"});
       },
       {"--metrics", "empty"}},
  };
}

std::vector<HostileCase> checkpoint_content_cases() {
  const auto transpose_w1 = [](const std::string& ck) {
    std::vector<hsize_t> dims;
    const std::vector<double> w = read_dataset(ck, "/model/W1", &dims);  // (8, 2)
    std::vector<double> t(w.size());
    for (hsize_t i = 0; i < dims[0]; ++i) {
      for (hsize_t j = 0; j < dims[1]; ++j) t[j * dims[0] + i] = w[i * dims[1] + j];
    }
    replace_dataset(ck, "/model/W1", {dims[1], dims[0]}, H5T_IEEE_F32LE, t);
  };
  return {
      checkpoint_case("TransposedW1", "--init", transpose_w1, {"--init", "/model/W1", "shape 2x8", "8x2"}, true),
      checkpoint_case("BiasWithAnExtraDimension", "--init",
                      [](const std::string& ck) {
                        replace_dataset(ck, "/model/b1", {8, 1}, H5T_IEEE_F32LE, std::vector<double>(8, 0.1));
                      },
                      {"--init", "/model/b1", "shape 8x1"}),
      checkpoint_case("IntegerWeights", "--init",
                      [](const std::string& ck) {
                        replace_dataset(ck, "/model/W2", {3, 8}, H5T_STD_I32LE, std::vector<double>(24, 1));
                      },
                      {"--init", "/model/W2", "floating-point"}),
      checkpoint_case("MissingW2", "--resume",
                      [](const std::string& ck) {
                        const hid_t f = H5Fopen(ck.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
                        H5Ldelete(f, "/model/W2", H5P_DEFAULT);
                        H5Fclose(f);
                        drop_checksum(ck);
                      },
                      {"--resume", "no /model/W2"}),
      checkpoint_case("NanInWeights", "--init", [](const std::string& ck) { poke(ck, "/model/W2", 3, std::nan("")); },
                      {"--init", "/model/W2", "NaN"}, true),
      checkpoint_case("InfInAdamState", "--resume",
                      [](const std::string& ck) {
                        poke(ck, "/optimizer/exp_avg/b1", 0, std::numeric_limits<double>::infinity());
                      },
                      {"--resume", "/optimizer/exp_avg/b1", "Inf"}, false, true),
      checkpoint_case("NegativeSumOfSquares", "--resume",
                      [](const std::string& ck) { poke(ck, "/optimizer/exp_avg_sq/W1", 0, -1.0); },
                      {"--resume", "exp_avg_sq", "negative"}, false, true),
      // The checksum in nn_dist's header: one flipped bit anywhere, or a cut-off tail.
      checkpoint_case("OneBitFlipped", "--resume",
                      [](const std::string& ck) {
                        std::fstream f(ck, std::ios::in | std::ios::out | std::ios::binary);
                        const std::streamoff at = static_cast<std::streamoff>(fs::file_size(ck) * 2 / 3);
                        char c = 0;
                        f.seekg(at);
                        f.get(c);
                        f.seekp(at);
                        f.put(static_cast<char>(c ^ 0x10));
                      },
                      {"--resume", "damaged", "checksum"}, true),
      checkpoint_case("TruncatedTail", "--init",
                      [](const std::string& ck) { fs::resize_file(ck, fs::file_size(ck) - 100); },
                      {"--init", "truncated", "holds"}),
      checkpoint_case("NegativeEpoch", "--resume",
                      [](const std::string& ck) { set_int_attr(ck, "/training", "epoch", {-5}); },
                      {"--resume", "'epoch'", "-5"}, true),
      checkpoint_case("NegativeOptimizerStep", "--resume",
                      [](const std::string& ck) { set_int_attr(ck, "/optimizer", "step", {-1}); },
                      {"--resume", "'step'", "-1"}),
      checkpoint_case("ZeroRanks", "--resume", [](const std::string& ck) { set_int_attr(ck, "/training", "ranks", {0}); },
                      {"--resume", "'ranks'", "at least 1"}),
      checkpoint_case("SizesStoredAsFloats", "--init",
                      [](const std::string& ck) {
                        const double sizes[3] = {2, 8, 3};
                        set_attr(ck, "/model", "sizes", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, sizes, 3);
                      },
                      {"--init", "'sizes'", "not an integer"}),
      checkpoint_case("ZeroWidthInSizes", "--init",
                      [](const std::string& ck) { set_int_attr(ck, "/model", "sizes", {2, 0, 3}); },
                      {"--init", "'sizes'", "width 0"}),
      checkpoint_case("AbsurdWidthInSizes", "--init",
                      [](const std::string& ck) { set_int_attr(ck, "/model", "sizes", {2, 1000000000000LL, 3}); },
                      {"--init", "'sizes'", "1000000000000"}),
      checkpoint_case("UnknownActivation", "--init",
                      [](const std::string& ck) { set_string_attr(ck, "/model", "activation", "swish", false); },
                      {"--init", "'activation'", "'swish'"}),
      checkpoint_case("TenMegabyteLossName", "--init",
                      [](const std::string& ck) {
                        set_string_attr(ck, "/model", "loss", std::string(10 << 20, 'x'), true);
                      },
                      {"--init", "'loss'", "bytes)"}),
      checkpoint_case("BinaryActivationName", "--init",
                      [](const std::string& ck) {
                        set_string_attr(ck, "/model", "activation", std::string("re\x1b[2Jlu\x01", 8), false);
                      },
                      {"--init", "'activation'", "\\x1b"}),
  };
}

std::vector<HostileCase> size_cases() {
  return {
      {"HugeHiddenLayers", [](const std::string& d) { return on_data(d, {"--hidden", "100000,100000"}); },
       {"--hidden 100000,100000", "GiB", "per rank"}, true},
      {"LabelOfAHundredMillion",
       [](const std::string& d) {
         write_labelled(d + "/big_label.h5", 60, 2, [](auto&, auto& y) { y[7] = 1e8; });
         return Args{"--data", d + "/big_label.h5", "--hidden", "8"};
       },
       {"label 100000000", "100000001 classes", "per rank"}, true},
      {"DatasetDeclaredWithTrillionsOfValues",
       [](const std::string& d) {
         // Chunked datasets with nothing written: a few KB on disk, 4 TB declared.
         write_h5(d + "/huge.h5", [](hid_t f) {
           for (const auto& [name, dims] : {std::pair<const char*, std::vector<hsize_t>>{"X", {1000000000, 1000}},
                                            {"y", {1000000000}}}) {
             const hid_t space = H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr);
             const hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
             std::vector<hsize_t> chunk(dims.size(), 1);
             chunk.back() = dims.size() == 2 ? 1000 : 1024;
             H5Pset_chunk(dcpl, static_cast<int>(chunk.size()), chunk.data());
             const hid_t ds = H5Dcreate2(f, name, dims.size() == 2 ? H5T_IEEE_F32LE : H5T_STD_I64LE, space,
                                         H5P_DEFAULT, dcpl, H5P_DEFAULT);
             H5Dclose(ds);
             H5Pclose(dcpl);
             H5Sclose(space);
           }
         });
         return Args{"--data", d + "/huge.h5", "--hidden", "8"};
       },
       {"--data", "huge.h5", "1000 features", "per rank"}},
      {"InfiniteLearningRate", [](const std::string& d) { return on_data(d, {"--lr", "inf"}); },
       {"--lr", "finite"}, false, {"diverged"}},
      {"NanMomentum", [](const std::string& d) { return on_data(d, {"--momentum", "nan"}); },
       {"--momentum", "finite"}},
      {"HundredThousandThreads", [](const std::string& d) { return on_data(d, {"--threads", "100000"}); },
       {"--threads 100000", "one rank per core"}, true},
      {"BucketOfAPetabyte", [](const std::string& d) { return on_data(d, {"--bucket-mb", "1e9"}); },
       {"--bucket-mb", "at most"}},
  };
}

std::vector<HostileCase> message_cases() {
  return {
      {"BinaryConfig",
       [](const std::string& d) {
         std::string junk;
         for (int i = 0; i < 4096; ++i) junk += static_cast<char>((i * 7919) % 256);
         write_text(d + "/bin.ini", junk);
         return on_data(d, {"--config", d + "/bin.ini"});
       },
       {"--config", "not a text file"}, true},
      {"ConfigWithATenMegabyteLine",
       [](const std::string& d) {
         write_text(d + "/long.ini", "hidden = " + std::string(10 << 20, '1') + "\n");
         return on_data(d, {"--config", d + "/long.ini"});
       },
       {"--config", "larger than 1 MiB"}},
      {"ConfigWithALongBadLine",
       [](const std::string& d) {
         write_text(d + "/bad.ini", std::string(200000, 'z') + "\n");
         return on_data(d, {"--config", d + "/bad.ini"});
       },
       {"--config", "bytes)"}},
  };
}

// A copy of the good checkpoint at dir/name whose header names another run
// (the header is outside the checksum: the file still loads).
std::string checkpoint_of_another_run(const std::string& dir, const std::string& name) {
  const std::string p = local_checkpoint(dir, name);
  std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
  std::string head(512, '\0');
  f.read(head.data(), 512);
  const std::size_t at = head.find("\nrun ");
  EXPECT_NE(at, std::string::npos) << p << " names no run";
  f.seekp(static_cast<std::streamoff>(at + 5));
  f.write("0123456789abcdef", 16);
  return p;
}

// A --checkpoint-dir belongs to one run; what cannot be examined is an error.
// The case's own folder is the --checkpoint-dir (a folder in it would show
// a new mtime from the probe that checks it takes new files).
std::vector<HostileCase> checkpoint_dir_cases() {
  const std::string long_name(300, 'x');
  return {
      {"CheckpointDirHoldsAnotherRunsCheckpoint",  // 1 epoch: steps 1..7
       [](const std::string& d) {
         local_checkpoint(d, "ckpt-0000000007.h5");
         return on_data(d, {"--checkpoint-dir", d});
       },
       {"--checkpoint-dir", "another run", "ckpt-0000000007.h5", "--resume auto", "folder of its own"}, true},
      {"ResumedRunIntoAnotherRunsCheckpointDir",
       [](const std::string& d) {
         checkpoint_of_another_run(d, "ckpt-0000000003.h5");
         return on_data(d, {"--resume", local_checkpoint(d), "--checkpoint-dir", d});
       },
       {"--checkpoint-dir", "another run", "ckpt-0000000003.h5"}},
      {"CheckpointDirHoldsAFileInTheWay",
       [](const std::string& d) {
         write_text(d + "/ckpt-0000000003.h5", "mine, not a checkpoint");
         return on_data(d, {"--checkpoint-dir", d});
       },
       {"--checkpoint-dir", "ckpt-0000000003.h5", "not a checkpoint of this run", "steps 1 to 7", "move it out"}},
      {"ValidationSetNamedLikeACheckpointInTheDir",
       [](const std::string& d) {
         fs::copy_file(shared().val, d + "/ckpt-0000000005.h5");
         return on_data(d, {"--val", d + "/ckpt-0000000005.h5", "--checkpoint-dir", d});
       },
       {"--checkpoint-dir", "ckpt-0000000005.h5", "move it out"}},
      {"MetricsNamedLikeACheckpointInTheDir",
       [](const std::string& d) { return on_data(d, {"--checkpoint-dir", d, "--metrics", d + "/ckpt-0000000007.h5"}); },
       {"--metrics", "ckpt-0000000007.h5", "checkpoint of --checkpoint-dir", "step 7", "another name"}, true},
      {"CheckpointDirIsASymlinkLoop",
       [](const std::string& d) { return on_data(d, {"--checkpoint-dir", make_symlink(d, "loop", "loop")}); },
       {"--checkpoint-dir", "loop", "Too many levels of symbolic links"}, true, {"File exists"}},
      {"CheckpointDirIsASymlinkLoopWithResumeAuto",
       [](const std::string& d) {
         return on_data(d, {"--checkpoint-dir", make_symlink(d, "loop", "loop"), "--resume", "auto"});
       },
       {"--checkpoint-dir", "loop", "Too many levels of symbolic links"}, true, {"filesystem error"}},
      {"CheckpointDirNameTooLongWithResumeAuto",
       [long_name](const std::string& d) {
         return on_data(d, {"--checkpoint-dir", d + "/" + long_name, "--resume", "auto"});
       },
       {"--checkpoint-dir", "File name too long"}, false, {"filesystem error"}},
      {"CheckpointNameTooLongWithResumeAuto",
       [long_name](const std::string& d) {
         return on_data(d, {"--checkpoint", d + "/" + long_name, "--resume", "auto"});
       },
       {"--checkpoint", "File name too long"}, false, {"filesystem error"}},
  };
}

std::vector<HostileCase> all_cases() {
  std::vector<HostileCase> all;
  for (auto group : {alias_cases(), special_file_cases(), argument_cases(), checkpoint_content_cases(), size_cases(),
                     message_cases(), checkpoint_dir_cases()}) {
    all.insert(all.end(), group.begin(), group.end());
  }
  return all;
}

class HostileTest : public E2eTest, public ::testing::WithParamInterface<HostileCase> {};

TEST_P(HostileTest, OneLineExitTwoOnEveryRankNothingChangedOnDisk) {
  const HostileCase& c = GetParam();
  Args args = c.prepare(dir_);
  ASSERT_FALSE(HasFailure()) << "could not prepare the case";
  const TreeSnapshot before(dir_), shared_before(shared().dir);
  for (int ranks : c.also_three_ranks ? std::vector<int>{2, 3} : std::vector<int>{2}) {
    const RunResult r = expect_clean_failure(dir_, ranks, args, c.expected);
    const std::vector<std::string> error = lines_containing(r.err, "nn_dist: error:");
    ASSERT_EQ(error.size(), 1u) << describe(r);
    EXPECT_LT(error[0].size(), 1200u) << "the error line is not bounded";
    for (const std::string& word : c.forbidden) EXPECT_FALSE(contains(error[0], word)) << error[0];
    EXPECT_TRUE(epoch_lines(r.out).empty()) << "trained before refusing\n" << describe(r);
  }
  expect_tree_unchanged(before, dir_);
  expect_tree_unchanged(shared_before, shared().dir);
}

INSTANTIATE_TEST_SUITE_P(Hostile, HostileTest, ::testing::ValuesIn(all_cases()),
                         [](const ::testing::TestParamInfo<HostileCase>& info) { return info.param.name; });

// ---- legal aliases and odd but valid paths

TEST_F(E2eTest, ResumeAndCheckpointMayBeOneFile) {
  const std::string ck = local_checkpoint(dir_);
  const RunResult r = run_nn_dist(dir_, 2, {"--data", shared().train, "--resume", ck, "--checkpoint", ck, "--epochs",
                                            "2", "--quiet"});
  expect_success(r);
  EXPECT_NE(file_bytes(ck), file_bytes(shared().checkpoint)) << "the continuation did not rewrite the checkpoint";
}

TEST_F(E2eTest, CheckpointThroughASymlinkReplacesTheTargetAndKeepsTheLink) {
  fs::create_directory(path("real"));
  const std::string target = path("real/ck.h5");
  fs::copy_file(shared().checkpoint, target);
  const std::string link = make_symlink(dir_, "ck_link.h5", target);
  const RunResult r = run_nn_dist(dir_, 2, {"--data", shared().train, "--hidden", "8", "--epochs", "1", "--seed",
                                            "7", "--checkpoint", link, "--quiet"});
  expect_success(r);
  EXPECT_TRUE(fs::is_symlink(link)) << "the link was replaced by a file";
  EXPECT_NE(file_bytes(target), file_bytes(shared().checkpoint)) << "the target was not rewritten";
}

TEST_F(E2eTest, BatchLargerThanTheDataIsFullBatchTraining) {
  // 400 samples on 3 ranks: shards of 134, 133, 133. Both runs take one full-batch step per epoch.
  const Args common{"--data", shared().train, "--hidden", "8", "--epochs", "3"};
  Args huge = common, exact = common;
  huge.insert(huge.end(), {"--batch-size", "1000000000"});
  exact.insert(exact.end(), {"--batch-size", "134"});
  const RunResult a = run_nn_dist(dir_, 3, huge), b = run_nn_dist(dir_, 3, exact);
  expect_success(a);
  expect_success(b);
  EXPECT_TRUE(contains(a.out, "whole shard")) << describe(a);
  EXPECT_TRUE(contains(a.out, "1 steps/epoch")) << describe(a);
  EXPECT_EQ(epoch_lines_without_timing(a.out), epoch_lines_without_timing(b.out));
  EXPECT_EQ(epoch_lines_without_timing(a.out).size(), 3u) << describe(a);
}

TEST_F(E2eTest, CheckpointWithVariableLengthStringsLoadsLikeTheFixedLengthOne) {
  // h5py writes string attributes as variable-length UTF-8 by default.
  const std::string fixed = local_checkpoint(dir_, "fixed.h5"), vlen = local_checkpoint(dir_, "vlen.h5");
  set_string_attr(vlen, "/model", "activation", "relu", true);
  set_string_attr(vlen, "/model", "loss", "softmax", true);
  set_string_attr(vlen, "/optimizer", "name", "sgd", true);
  set_string_attr(vlen, "/training", "options", "hidden = 8\n", true);
  for (const std::string flag : {"--init", "--resume"}) {
    SCOPED_TRACE(flag);
    const Args common{"--data", shared().train, "--epochs", "2"};
    Args a = common, b = common;
    a.insert(a.end(), {flag, fixed});
    b.insert(b.end(), {flag, vlen});
    const RunResult ra = run_nn_dist(dir_, 2, a), rb = run_nn_dist(dir_, 2, b);
    expect_success(ra);
    expect_success(rb);
    EXPECT_FALSE(epoch_lines_without_timing(rb.out).empty()) << describe(rb);
    EXPECT_EQ(epoch_lines_without_timing(ra.out), epoch_lines_without_timing(rb.out));
  }
}

// ---- another program holds the data open for writing

TEST_F(E2eTest, DataHeldOpenByAnHdf5WriterIsNamedAsSuch) {
  const std::string data = local_data(dir_);
  const hid_t writer = H5Fopen(data.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(writer, 0);
  for (int ranks : {2, 3}) {
    expect_clean_failure(dir_, ranks, {"--data", data, "--hidden", "8", "--epochs", "1"},
                         {"--data", "open for writing by another program"});
  }
  H5Fclose(writer);
  expect_success(run_nn_dist(dir_, 2, {"--data", data, "--hidden", "8", "--epochs", "1", "--quiet"}));
}

// ---- full and read-only disks: a small tmpfs mounted by the test

// Mounts a tmpfs of `kib` KiB (read-only if asked) and unmounts it on every path.
class ScratchMount {
 public:
  ScratchMount(const std::string& where, int kib, bool read_only = false) : where_(where) {
    fs::create_directories(where);
    const std::string options = "size=" + std::to_string(kib) + "k";
    if (::mount("tmpfs", where.c_str(), "tmpfs", read_only ? MS_RDONLY : 0, options.c_str()) == 0) {
      mounted_ = true;
    } else {
      why_ = std::string("cannot mount a tmpfs (") + std::strerror(errno) + "): needs root or CAP_SYS_ADMIN";
    }
  }
  // Detached even while busy, so the test's folder can be removed after it.
  ~ScratchMount() {
    if (mounted_ && ::umount2(where_.c_str(), MNT_DETACH) != 0) {
      std::fprintf(stderr, "warning: cannot unmount %s: %s\n", where_.c_str(), std::strerror(errno));
    }
  }
  ScratchMount(const ScratchMount&) = delete;
  ScratchMount& operator=(const ScratchMount&) = delete;
  bool mounted() const { return mounted_; }
  const std::string& why() const { return why_; }
  // Fills the file system with a file until no byte more fits, then frees `keep` bytes.
  void fill(std::uintmax_t keep = 0) const {
    const std::string filler = where_ + "/filler";
    {
      std::ofstream out(filler, std::ios::binary);
      const std::string block(4096, 'f');
      while (out.write(block.data(), static_cast<std::streamsize>(block.size()))) {
      }
    }
    const std::uintmax_t size = fs::file_size(filler);
    fs::resize_file(filler, size > keep ? size - keep : 0);
  }

 private:
  std::string where_, why_;
  bool mounted_ = false;
};

TEST_F(E2eTest, FullDiskDuringTheCheckpointWriteEndsCleanlyAndKeepsTheOldOne) {
  const ScratchMount disk(path("disk"), 512);
  if (!disk.mounted()) GTEST_SKIP() << disk.why();
  const std::string ck = path("disk/ck.h5");
  fs::copy_file(shared().checkpoint, ck);
  // 8 KB stay free: a 2-2048-3 checkpoint (about 60 KB) starts to be written,
  // then the disk fills. Observed before the fix: a segmentation fault in
  // HDF5's shutdown (exit 139) after the error line, at 2048 and 8192 wide.
  disk.fill(8192);
  const TreeSnapshot before(path("disk"));
  const Args args{"--data", shared().train, "--hidden", "2048", "--epochs", "2", "--checkpoint", ck};
  for (int ranks : {2, 3}) {
    expect_clean_failure(dir_, ranks, args, {"--checkpoint", "No space left on device", "unchanged"});
  }
  expect_tree_unchanged(before, path("disk"));
}

TEST_F(E2eTest, FullDiskUnderTheMetricsIsAnErrorNotAnEmptyFile) {
  const ScratchMount disk(path("disk"), 256);
  if (!disk.mounted()) GTEST_SKIP() << disk.why();
  disk.fill();
  const TreeSnapshot before(path("disk"));
  const Args args{"--data", shared().train, "--hidden", "8", "--epochs", "1", "--metrics", path("disk/m.csv")};
  for (int ranks : {2, 3}) expect_clean_failure(dir_, ranks, args, {"--metrics", "No space left on device"});
  expect_tree_unchanged(before, path("disk"));
}

TEST_F(E2eTest, MetricsRowThatCannotBeWrittenMidRunStopsEveryRank) {
  // --resume appends to the metrics file: the header is not rewritten, so the
  // first failing write is the row after epoch 2, once training has started.
  const ScratchMount disk(path("disk"), 256);
  if (!disk.mounted()) GTEST_SKIP() << disk.why();
  const std::string csv = path("disk/m.csv"), ck = path("disk/ck.h5");
  fs::copy_file(shared().checkpoint, ck);
  write_text(csv, std::string(4096, '#'));  // exactly one page: the next byte needs another
  disk.fill();
  const FileSnapshot checkpoint_before(ck);
  const std::string csv_before = file_bytes(csv);
  const Args args{"--data", shared().train, "--resume", ck, "--checkpoint", ck, "--metrics", csv, "--epochs", "3"};
  for (int ranks : {2, 3}) {
    const RunResult r = expect_clean_failure(dir_, ranks, args, {"--metrics", "write failed", "No space left"});
    EXPECT_EQ(epoch_lines(r.out).size(), 1u) << "expected to fail at the end of epoch 2\n" << describe(r);
  }
  expect_unchanged(checkpoint_before, ck);  // epoch 2's checkpoint was never written
  // The kernel updates the mtime of a failed append; the bytes must not change.
  EXPECT_EQ(file_bytes(csv), csv_before);
}

TEST_F(E2eTest, ReadOnlyFolderIsRefusedBeforeTraining) {
  const ScratchMount disk(path("ro"), 64, true);
  if (!disk.mounted()) GTEST_SKIP() << disk.why();
  for (const std::string flag : {"--checkpoint", "--metrics"}) {
    const Args args{"--data", shared().train, "--hidden", "8", "--epochs", "1", flag, path("ro/out")};
    for (int ranks : {2, 3}) {
      expect_clean_failure(dir_, ranks, args, {flag, "cannot create files", "Read-only file system"});
      EXPECT_TRUE(epoch_lines(run_nn_dist(dir_, ranks, args, kErrorTimeoutSeconds).out).empty());
    }
  }
}

// ---- temporary files: removed when a signal ends the run, and leftovers of killed runs cleaned up

std::vector<std::string> temporaries_in(const std::string& dir) {
  std::vector<std::string> found;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().filename().string().find(".tmp.") != std::string::npos) found.push_back(entry.path());
  }
  return found;
}

// A stop signal inside a checkpoint write, made certain by the test-only
// pause (NN_DIST_TEST_PAUSE_IN_WRITE, see io/files.hpp): rank 0's first write
// stops with its temporary file complete and named, over a copy of the good
// checkpoint (the previous one); the test signals, sees rank 0 note the
// signal while paused, then lets the write go on or signals again. One step
// per epoch (400 samples, batch 200 on 2 ranks): the paused write is epoch 1's.
class SignalInWriteTest : public E2eTest {
 protected:
  void SetUp() override {
    E2eTest::SetUp();
    fs::create_directory(path("ck"));
    ck_ = path("ck/ck.h5");
    fs::copy_file(shared().checkpoint, ck_);
    marker_ = path("paused");
    run_ = std::make_unique<BackgroundRun>(
        dir_, "env " + std::string(kPauseInWriteVariable) + "=" + quote(marker_) + " " + mpirun_prefix(2) + " " +
                  quote(NN_DIST_BIN) +
                  joined({"--data", shared().train, "--hidden", "8", "--batch-size", "200", "--epochs", "100000",
                          "--checkpoint", ck_}));
    ASSERT_TRUE(wait_for([&] { return fs::exists(marker_); }, kTrainingTimeoutSeconds))
        << "rank 0 did not pause inside its first checkpoint write\n" << describe(run_->wait(0));
    temporary_ = lines_of(file_bytes(marker_)).at(0);
    ASSERT_TRUE(fs::exists(temporary_)) << "no write in progress: " << temporary_ << " is not there";
    ASSERT_EQ(file_bytes(ck_), file_bytes(shared().checkpoint)) << "the previous checkpoint was replaced already";
    ranks_ = run_->rank_pids(2, kTrainingTimeoutSeconds);
    ASSERT_EQ(ranks_.size(), 2u) << "the ranks' process ids were not found";
  }

  // Rank 0, paused inside the write, has received the stop signal.
  void expect_signal_noted_during_the_write() {
    ASSERT_TRUE(wait_for([&] { return contains(file_bytes(marker_), "stop signal"); }, kTrainingTimeoutSeconds))
        << "rank 0 did not receive the stop signal while it was writing\n" << describe(run_->wait(0));
  }

  std::string ck_, marker_, temporary_;
  std::unique_ptr<BackgroundRun> run_;
  std::vector<pid_t> ranks_;
};

TEST_F(SignalInWriteTest, SigtermToMpirunFinishesTheWriteAndStopsAtTheNextStep) {
  // Open MPI passes mpirun's SIGTERM to the ranks and kills them 1 s later:
  // within that second rank 0 finishes the write, takes one more step, writes
  // that step's checkpoint and exits 75; mpirun itself then exits 1.
  ASSERT_EQ(::kill(run_->pid(), SIGTERM), 0);
  expect_signal_noted_during_the_write();
  fs::remove(marker_);
  const RunResult r = run_->wait(kTrainingTimeoutSeconds);
  ASSERT_NE(r.code, kTimedOut) << describe(r);
  EXPECT_EQ(r.code, 1) << describe(r);
  const std::vector<std::string> stop = lines_containing(r.out, "nn_dist: SIGTERM reached ");
  ASSERT_EQ(stop.size(), 1u) << describe(r);
  EXPECT_TRUE(contains(stop[0], "stopped after step 2 (the end of epoch 2); checkpoint " + ck_ + " written"))
      << stop[0];
  EXPECT_TRUE(contains(stop[0], "with code 75")) << stop[0];
  EXPECT_TRUE(temporaries_in(path("ck")).empty()) << "left " << temporaries_in(path("ck"))[0];
  EXPECT_NE(file_bytes(ck_), file_bytes(shared().checkpoint)) << "the new checkpoint did not replace the previous one";
  const RunResult resumed = run_nn_dist(dir_, 2, {"--data", shared().train, "--hidden", "8", "--batch-size", "200",
                                                  "--epochs", "100000", "--resume", ck_, "--max-steps", "3"});
  expect_success(resumed);
  EXPECT_EQ(lines_containing(resumed.out, "epoch 3/100000").size(), 1u) << "did not continue from step 2\n"
                                                                        << describe(resumed);
}

TEST_F(SignalInWriteTest, SecondSigtermRemovesTheTemporaryFileAndKeepsThePreviousCheckpoint) {
  // A second stop signal ends the process at once: its handler removes the
  // half-done file; the previous checkpoint stays, byte for byte.
  const FileSnapshot previous(ck_);
  ASSERT_EQ(::kill(ranks_[0], SIGTERM), 0);
  expect_signal_noted_during_the_write();
  ASSERT_EQ(::kill(ranks_[0], SIGTERM), 0);
  const RunResult r = run_->wait(kTrainingTimeoutSeconds);
  ASSERT_NE(r.code, kTimedOut) << describe(r);
  EXPECT_EQ(r.code, 128 + SIGTERM) << "mpirun passes on rank 0's death by SIGTERM\n" << describe(r);
  EXPECT_TRUE(contains(r.err, "rank 0") && contains(r.err, "exited on signal 15")) << describe(r);
  EXPECT_FALSE(fs::exists(temporary_)) << temporary_ << " was left";
  expect_unchanged(previous, ck_);  // also: no temporary file in its folder
}

// ---- a stop signal during start-up

// Rank 1 is held before it starts nn_dist until the file `gate` exists, so
// rank 0 waits inside MPI_Init (for every rank) as long as the test wants: the
// signal lands there, where it used to end the rank (exit 143/138/130, no
// requeue). Rank 0 is in MPI_Init once it runs Open MPI's threads (nn_dist
// starts none before). The script prints what it saw, for the test to check.
std::string stop_during_mpi_init(const std::string& dir, const std::string& sig, const std::vector<std::string>& args) {
  const std::string gate = dir + "/gate." + sig;
  const std::string hold = "if [ \"$OMPI_COMM_WORLD_RANK\" = 1 ]; then i=0; while [ ! -e " + quote(gate) +
                           " ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; fi; exec \"$0\" \"$@\"";
  return mpirun_prefix(2) + " sh -c " + quote(hold) + " " + quote(NN_DIST_BIN) + joined(args) +
         " & m=$!; p=; i=0; "
         "while [ $i -lt 3000 ]; do "
         "  p=$(pgrep -P $m -x nn_dist) && [ \"$(ls /proc/$p/task | wc -l)\" -gt 1 ] && break; "
         "  p=; sleep 0.01; i=$((i+1)); "
         "done; "
         "if [ -n \"$p\" ]; then kill -" + sig + " $p && echo \"test: SIG" + sig + " sent to rank 0 in MPI_Init\" >&2; "
         "else echo 'test: rank 0 was never seen in MPI_Init' >&2; fi; "
         "touch " + quote(gate) + "; wait $m";
}

TEST_F(E2eTest, StopSignalDuringMpiInitCheckpointsAfterTheFirstStepAndExits75) {
  for (const std::string sig : {"TERM", "USR1", "INT"}) {
    SCOPED_TRACE("SIG" + sig);
    const std::string ck = path("ck_" + sig + ".h5");
    const std::vector<std::string> args{"--data", shared().train, "--hidden", "8", "--epochs", "2", "--checkpoint", ck};
    const RunResult r = run_shell(dir_, "sh -c " + quote(stop_during_mpi_init(dir_, sig, args)));
    ASSERT_TRUE(contains(r.err, "test: SIG" + sig + " sent to rank 0 in MPI_Init")) << describe(r);
    EXPECT_EQ(r.code, 75) << describe(r);
    EXPECT_TRUE(contains(r.out, "nn_dist: SIG" + sig + " reached 1 of 2 rank(s); stopped after step 1 (step 1 of"))
        << describe(r);
    EXPECT_TRUE(contains(r.out, "checkpoint " + ck + " written")) << describe(r);
    ASSERT_TRUE(fs::is_regular_file(ck)) << describe(r);
    const RunResult resumed = run_nn_dist(dir_, 2, {"--data", shared().train, "--hidden", "8", "--epochs", "2",
                                                    "--resume", ck, "--checkpoint", ck});
    expect_success(resumed);
    EXPECT_EQ(epoch_lines(resumed.out).size(), 2u) << describe(resumed);
  }
}

TEST_F(E2eTest, LeftoversOfKilledRunsOnThisHostAreRemoved) {
  fs::create_directory(path("ck"));
  const std::string ck = path("ck/ck.h5");
  char host[256] = {0};
  ::gethostname(host, sizeof host - 1);
  // A process id that is not running (above the kernel's pid_max), one that is (this test), another host's.
  const std::string dead = path("ck/.ck.h5.tmp." + std::string(host) + ".999999999");
  const std::string old_style = path("ck/.ck.h5.tmp.999999998");
  const std::string alive = path("ck/.ck.h5.tmp." + std::string(host) + "." + std::to_string(::getpid()));
  const std::string elsewhere = path("ck/.ck.h5.tmp.another-host.999999999");
  for (const std::string& p : {dead, old_style, alive, elsewhere}) write_text(p, "partial");
  const RunResult r = run_nn_dist(dir_, 2, {"--data", shared().train, "--hidden", "8", "--epochs", "1", "--checkpoint",
                                            ck, "--quiet"});
  expect_success(r);
  EXPECT_FALSE(fs::exists(dead)) << describe(r);
  EXPECT_FALSE(fs::exists(old_style)) << describe(r);
  EXPECT_TRUE(fs::exists(alive)) << "removed a file whose process is still running";
  EXPECT_TRUE(fs::exists(elsewhere)) << "removed another host's file";
  EXPECT_TRUE(contains(r.out, "removed")) << describe(r);
}

}  // namespace
}  // namespace nn_dist::e2e
