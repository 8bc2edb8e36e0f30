// Thin owning wrappers over the HDF5 C API.
#include "io/h5util.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>

#include "nn_dist/common/error.hpp"
#include "nn_dist/common/text.hpp"
#include "nn_dist/io/files.hpp"

namespace nn_dist::h5 {

Handle& Handle::operator=(Handle&& other) noexcept {
  if (this != &other) {
    reset();
    id_ = other.id_;
    closer_ = other.closer_;
    other.id_ = -1;
  }
  return *this;
}

void Handle::reset() {
  if (id_ >= 0 && closer_) closer_(id_);
  id_ = -1;
}

void quiet_errors() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }

namespace {

// HDF5 writers hold an exclusive flock on their file while it is open; a
// shared lock that cannot be had means another program is writing it now.
bool held_by_writer(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool busy = ::flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
  ::close(fd);  // closing releases the lock
  return busy;
}

}  // namespace

Handle open_file(const std::string& path, const std::string& what) {
  quiet_errors();
  require_input_file(path, what);
  if (H5Fis_hdf5(path.c_str()) <= 0) throw Error(what + ": not an HDF5 file");
  if (held_by_writer(path)) {
    throw Error(what + ": is open for writing by another program (it holds the HDF5 file lock); "
                "wait until that program has closed it");
  }
  hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (file < 0) throw Error(what + ": cannot be opened as HDF5 (damaged or truncated?)");
  return Handle(file, H5Fclose);
}

Handle create_in_memory_file(hsize_t userblock) {
  quiet_errors();
  Handle fcpl(H5Pcreate(H5P_FILE_CREATE), H5Pclose);
  if (!fcpl.valid() || (userblock > 0 && H5Pset_userblock(fcpl.get(), userblock) < 0)) {
    throw Error("cannot set up an in-memory HDF5 file with a user block");
  }
  Handle fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  // The core driver without a backing store: the file exists only in memory
  // until file_image() copies it out, so HDF5 itself never writes to disk.
  if (!fapl.valid() || H5Pset_fapl_core(fapl.get(), 1 << 20, 0) < 0) throw Error("cannot set up an in-memory HDF5 file");
  // The core driver still tries to open a file of this name: one that cannot exist.
  hid_t file = H5Fcreate("/dev/null/nn_dist_in_memory.h5", H5F_ACC_TRUNC, fcpl.get(), fapl.get());
  if (file < 0) throw Error("cannot create an in-memory HDF5 file");
  return Handle(file, H5Fclose);
}

std::vector<char> file_image(hid_t file) {
  if (H5Fflush(file, H5F_SCOPE_GLOBAL) < 0) throw Error("cannot flush the in-memory HDF5 file");
  const ssize_t size = H5Fget_file_image(file, nullptr, 0);
  if (size <= 0) throw Error("cannot size the in-memory HDF5 file");
  std::vector<char> image(static_cast<std::size_t>(size));
  if (H5Fget_file_image(file, image.data(), image.size()) != size) throw Error("cannot copy the in-memory HDF5 file");
  return image;
}

bool exists(hid_t loc, const std::string& name) {
  return H5Lexists(loc, name.c_str(), H5P_DEFAULT) > 0 && H5Oexists_by_name(loc, name.c_str(), H5P_DEFAULT) > 0;
}

Handle open_dataset(hid_t loc, const std::string& name, const std::string& what) {
  if (!exists(loc, name)) throw Error(what + ": has no dataset '" + name + "'");
  hid_t ds = H5Dopen2(loc, name.c_str(), H5P_DEFAULT);
  if (ds < 0) throw Error(what + ": '" + name + "' is not a dataset");
  return Handle(ds, H5Dclose);
}

std::vector<hsize_t> dims(hid_t dataset) {
  Handle space(H5Dget_space(dataset), H5Sclose);
  const int rank = H5Sget_simple_extent_ndims(space.get());
  std::vector<hsize_t> out(rank > 0 ? rank : 0);
  if (rank > 0) H5Sget_simple_extent_dims(space.get(), out.data(), nullptr);
  return out;
}

namespace {

// A whole dataset (file_type on disk) or a 1-D attribute, from memory of mem_type.
void write_array(hid_t loc, const std::string& name, const std::vector<hsize_t>& shape, hid_t file_type,
                 hid_t mem_type, const void* data) {
  Handle space(H5Screate_simple(static_cast<int>(shape.size()), shape.data(), nullptr), H5Sclose);
  Handle ds(H5Dcreate2(loc, name.c_str(), file_type, space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Dclose);
  if (!ds.valid() || H5Dwrite(ds.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) {
    throw Error("cannot write dataset '" + name + "'");
  }
}

void write_attr_array(hid_t loc, const std::string& name, hsize_t n, hid_t file_type, hid_t mem_type,
                      const void* data) {
  Handle space(H5Screate_simple(1, &n, nullptr), H5Sclose);
  Handle attr(H5Acreate2(loc, name.c_str(), file_type, space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  if (!attr.valid() || H5Awrite(attr.get(), mem_type, data) < 0) {
    throw Error("cannot write attribute '" + name + "'");
  }
}

}  // namespace

void write_floats(hid_t loc, const std::string& name, const std::vector<hsize_t>& shape, const float* data) {
  write_array(loc, name, shape, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, data);
}

namespace {

std::string shape_text(const std::vector<hsize_t>& shape) {
  if (shape.empty()) return "a scalar";
  std::string s;
  for (hsize_t d : shape) s += (s.empty() ? "" : "x") + std::to_string(d);
  return s;
}

}  // namespace

namespace {

template <typename T>
std::vector<T> read_checked(hid_t loc, const std::string& name, const std::string& what, const std::string& where,
                            const std::vector<hsize_t>& shape, const std::string& shape_source, hid_t mem_type) {
  if (!exists(loc, name)) throw Error(what + ": has no " + where);
  Handle ds(H5Dopen2(loc, name.c_str(), H5P_DEFAULT), H5Dclose);
  if (!ds.valid()) throw Error(what + ": " + where + " is not a dataset");
  Handle type(H5Dget_type(ds.get()), H5Tclose);
  if (H5Tget_class(type.get()) != H5T_FLOAT) throw Error(what + ": " + where + " is not floating-point");
  const std::vector<hsize_t> stored = dims(ds.get());
  if (stored != shape) {
    throw Error(what + ": " + where + " has shape " + shape_text(stored) + ", but " + shape_source + " needs " +
                shape_text(shape));
  }
  hsize_t count = 1;
  for (hsize_t d : shape) count *= d;
  std::vector<T> out(count);
  if (count > 0 && H5Dread(ds.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data()) < 0) {
    throw Error(what + ": cannot read " + where + " (damaged file?)");
  }
  for (T v : out) {
    if (!std::isfinite(v)) throw Error(what + ": " + where + " holds NaN or Inf values; the checkpoint cannot be used");
  }
  return out;
}

}  // namespace

std::vector<float> read_tensor(hid_t loc, const std::string& name, const std::string& what, const std::string& where,
                               const std::vector<hsize_t>& shape, const std::string& shape_source) {
  return read_checked<float>(loc, name, what, where, shape, shape_source, H5T_NATIVE_FLOAT);
}

std::vector<double> read_tensor_f64(hid_t loc, const std::string& name, const std::string& what,
                                    const std::string& where, const std::vector<hsize_t>& shape,
                                    const std::string& shape_source) {
  return read_checked<double>(loc, name, what, where, shape, shape_source, H5T_NATIVE_DOUBLE);
}

void write_doubles(hid_t loc, const std::string& name, const std::vector<hsize_t>& shape, const double* data) {
  write_array(loc, name, shape, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, data);
}

void write_strings(hid_t loc, const std::string& name, const std::vector<std::string>& values) {
  std::size_t longest = 1;
  for (const std::string& v : values) longest = std::max(longest, v.size());
  std::vector<char> packed(longest * values.size(), '\0');
  for (std::size_t i = 0; i < values.size(); ++i) {
    std::copy(values[i].begin(), values[i].end(), packed.data() + i * longest);
  }
  Handle type(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(type.get(), longest);
  H5Tset_cset(type.get(), H5T_CSET_UTF8);
  write_array(loc, name, {static_cast<hsize_t>(values.size())}, type.get(), type.get(), packed.data());
}

std::vector<std::string> read_strings(hid_t loc, const std::string& name, const std::string& what,
                                      const std::string& where) {
  Handle ds = open_dataset(loc, name, what);
  Handle type(H5Dget_type(ds.get()), H5Tclose);
  const std::vector<hsize_t> shape = dims(ds.get());
  if (H5Tget_class(type.get()) != H5T_STRING || shape.size() != 1) {
    throw Error(what + ": '" + where + "' is not a 1-D list of strings");
  }
  const std::size_t n = shape[0];
  std::vector<std::string> out;
  const auto fail = [&] { return Error(what + ": cannot read '" + where + "' (damaged file?)"); };
  if (H5Tis_variable_str(type.get()) > 0) {
    std::vector<char*> texts(n, nullptr);
    Handle mem(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(mem.get(), H5T_VARIABLE);
    H5Tset_cset(mem.get(), H5Tget_cset(type.get()));
    if (n > 0 && H5Dread(ds.get(), mem.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, texts.data()) < 0) throw fail();
    for (char* text : texts) {
      out.emplace_back(text ? text : "");
      H5free_memory(text);
    }
    return out;
  }
  const std::size_t size = H5Tget_size(type.get());
  std::vector<char> packed(size * n);
  if (n > 0 && H5Dread(ds.get(), type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, packed.data()) < 0) throw fail();
  const bool spaces = H5Tget_strpad(type.get()) == H5T_STR_SPACEPAD;
  for (std::size_t i = 0; i < n; ++i) {
    std::string text(packed.data() + i * size, strnlen(packed.data() + i * size, size));
    if (spaces) text.erase(text.find_last_not_of(' ') + 1);
    out.push_back(std::move(text));
  }
  return out;
}

void write_attr_string(hid_t loc, const std::string& name, const std::string& value) {
  Handle type(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(type.get(), value.empty() ? 1 : value.size());
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  Handle attr(H5Acreate2(loc, name.c_str(), type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  if (!attr.valid() || H5Awrite(attr.get(), type.get(), value.empty() ? "" : value.data()) < 0) {
    throw Error("cannot write attribute '" + name + "'");
  }
}

void write_attr_ints(hid_t loc, const std::string& name, const std::vector<long long>& values) {
  write_attr_array(loc, name, values.size(), H5T_STD_I64LE, H5T_NATIVE_LLONG, values.data());
}

std::string read_attr_string(hid_t loc, const std::string& name, const std::string& what) {
  if (H5Aexists(loc, name.c_str()) <= 0) throw Error(what + ": attribute '" + name + "' is missing");
  Handle attr(H5Aopen(loc, name.c_str(), H5P_DEFAULT), H5Aclose);
  Handle type(H5Aget_type(attr.get()), H5Tclose);
  if (H5Tget_class(type.get()) != H5T_STRING) throw Error(what + ": attribute '" + name + "' is not a string");
  std::string out;
  if (H5Tis_variable_str(type.get()) > 0) {
    char* text = nullptr;
    Handle mem(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(mem.get(), H5T_VARIABLE);
    H5Tset_cset(mem.get(), H5Tget_cset(type.get()));  // h5py writes UTF-8; HDF5 converts no character sets
    if (H5Aread(attr.get(), mem.get(), &text) < 0) throw Error(what + ": cannot read attribute '" + name + "'");
    out = text ? text : "";
    H5free_memory(text);
  } else {
    const std::size_t size = H5Tget_size(type.get());
    std::vector<char> buf(size + 1, '\0');
    if (H5Aread(attr.get(), type.get(), buf.data()) < 0) throw Error(what + ": cannot read attribute '" + name + "'");
    out = buf.data();
  }
  return out;
}

std::vector<long long> read_attr_ints(hid_t loc, const std::string& name, const std::string& what) {
  if (H5Aexists(loc, name.c_str()) <= 0) throw Error(what + ": attribute '" + name + "' is missing");
  Handle attr(H5Aopen(loc, name.c_str(), H5P_DEFAULT), H5Aclose);
  Handle type(H5Aget_type(attr.get()), H5Tclose);
  if (H5Tget_class(type.get()) != H5T_INTEGER) throw Error(what + ": attribute '" + name + "' is not an integer");
  Handle space(H5Aget_space(attr.get()), H5Sclose);
  const hssize_t n = H5Sget_simple_extent_npoints(space.get());
  std::vector<long long> out(n > 0 ? n : 0);
  if (n > 0 && H5Aread(attr.get(), H5T_NATIVE_LLONG, out.data()) < 0) {
    throw Error(what + ": cannot read attribute '" + name + "'");
  }
  return out;
}

void write_attr_doubles(hid_t loc, const std::string& name, const std::vector<double>& values) {
  write_attr_array(loc, name, values.size(), H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, values.data());
}

std::vector<double> read_attr_doubles(hid_t loc, const std::string& name, const std::string& what) {
  if (H5Aexists(loc, name.c_str()) <= 0) throw Error(what + ": attribute '" + name + "' is missing");
  Handle attr(H5Aopen(loc, name.c_str(), H5P_DEFAULT), H5Aclose);
  Handle type(H5Aget_type(attr.get()), H5Tclose);
  if (H5Tget_class(type.get()) != H5T_FLOAT) throw Error(what + ": attribute '" + name + "' is not a float");
  Handle space(H5Aget_space(attr.get()), H5Sclose);
  const hssize_t n = H5Sget_simple_extent_npoints(space.get());
  std::vector<double> out(n > 0 ? n : 0);
  if (n > 0 && H5Aread(attr.get(), H5T_NATIVE_DOUBLE, out.data()) < 0) {
    throw Error(what + ": cannot read attribute '" + name + "'");
  }
  return out;
}

long long read_attr_int(hid_t loc, const std::string& name, const std::string& what) {
  const std::vector<long long> values = read_attr_ints(loc, name, what);
  if (values.size() != 1) throw Error(what + ": attribute '" + name + "' should hold one integer");
  return values[0];
}

}  // namespace nn_dist::h5
