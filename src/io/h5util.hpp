// Private helpers for the HDF5 C API: owning handles and small typed reads
// and writes. Errors become nn_dist::Error naming the file.
#pragma once

#include <hdf5.h>

#include <string>
#include <vector>

namespace nn_dist::h5 {

// Owns one hid_t and closes it with the matching H5*close.
class Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  Handle() = default;
  Handle(hid_t id, Closer closer) : id_(id), closer_(closer) {}
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  Handle(Handle&& other) noexcept : id_(other.id_), closer_(other.closer_) { other.id_ = -1; }
  Handle& operator=(Handle&& other) noexcept;
  ~Handle() { reset(); }
  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }
  void reset();

 private:
  hid_t id_ = -1;
  Closer closer_ = nullptr;
};

// Silences HDF5's own error printing once; nn_dist reports errors itself.
void quiet_errors();

// Opens an existing HDF5 file read-only; `what` prefixes error messages
// (e.g. "--data train.h5"). Refuses folders, FIFOs and devices before opening
// anything, and names a file that another program holds open for writing.
Handle open_file(const std::string& path, const std::string& what);
// A new HDF5 file that lives in memory only, and its bytes as a file.
// userblock: bytes HDF5 leaves free at the start of the file (0, or a power of 2 from 512).
Handle create_in_memory_file(hsize_t userblock = 0);
std::vector<char> file_image(hid_t file);
bool exists(hid_t loc, const std::string& name);
Handle open_dataset(hid_t loc, const std::string& name, const std::string& what);
std::vector<hsize_t> dims(hid_t dataset);

// Whole-dataset reads and writes of row-major data.
void write_floats(hid_t loc, const std::string& name, const std::vector<hsize_t>& shape, const float* data);
// Reads a floating-point dataset that must have exactly `shape` and only
// finite values. `where` names it in errors ("/model/W1"); shape_source says
// where the expected shape comes from ("the layers 2-8-3 in 'sizes'").
std::vector<float> read_tensor(hid_t loc, const std::string& name, const std::string& what, const std::string& where,
                               const std::vector<hsize_t>& shape, const std::string& shape_source);
// The same, for float64 data (e.g. /preprocess/mean).
std::vector<double> read_tensor_f64(hid_t loc, const std::string& name, const std::string& what,
                                    const std::string& where, const std::vector<hsize_t>& shape,
                                    const std::string& shape_source);
void write_doubles(hid_t loc, const std::string& name, const std::vector<hsize_t>& shape, const double* data);
// A 1-D dataset of strings: written fixed-length (UTF-8), read in either HDF5
// form (fixed-length, or h5py's default variable-length). `where` names it in errors.
void write_strings(hid_t loc, const std::string& name, const std::vector<std::string>& values);
std::vector<std::string> read_strings(hid_t loc, const std::string& name, const std::string& what,
                                      const std::string& where);
void write_attr_string(hid_t loc, const std::string& name, const std::string& value);
void write_attr_ints(hid_t loc, const std::string& name, const std::vector<long long>& values);
void write_attr_doubles(hid_t loc, const std::string& name, const std::vector<double>& values);
std::string read_attr_string(hid_t loc, const std::string& name, const std::string& what);
std::vector<long long> read_attr_ints(hid_t loc, const std::string& name, const std::string& what);  // integer type only
long long read_attr_int(hid_t loc, const std::string& name, const std::string& what);  // exactly one value
std::vector<double> read_attr_doubles(hid_t loc, const std::string& name, const std::string& what);  // float type only

}  // namespace nn_dist::h5
