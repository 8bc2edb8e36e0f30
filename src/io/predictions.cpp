// The --predictions file, built in memory and written atomically.
#include "nn_dist/io/predictions.hpp"

#include "io/h5util.hpp"
#include "nn_dist/common/error.hpp"
#include "nn_dist/io/files.hpp"

namespace nn_dist {

void write_predictions(const std::string& path, const std::string& what, const std::vector<float>& outputs, long n,
                       long k, const std::vector<int64_t>& classes, const std::string& kind) {
  std::vector<char> image;
  try {
    h5::Handle file = h5::create_in_memory_file();
    h5::write_floats(file.get(), "outputs", {static_cast<hsize_t>(n), static_cast<hsize_t>(k)}, outputs.data());
    h5::Handle root(H5Oopen(file.get(), "/", H5P_DEFAULT), H5Oclose);
    h5::write_attr_string(root.get(), "outputs", kind);
    if (!classes.empty()) {
      const hsize_t count = static_cast<hsize_t>(n);
      h5::Handle space(H5Screate_simple(1, &count, nullptr), H5Sclose);
      h5::Handle ds(H5Dcreate2(file.get(), "predicted", H5T_STD_I64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT,
                               H5P_DEFAULT),
                    H5Dclose);
      if (!ds.valid() || H5Dwrite(ds.get(), H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, classes.data()) < 0) {
        throw Error("cannot write dataset 'predicted'");
      }
    }
    image = h5::file_image(file.get());
  } catch (const Error& e) {
    throw Error(what + ": cannot build the file (" + std::string(e.what()) + ")");
  }
  write_file_atomically(path, image.data(), image.size(), what);
}

}  // namespace nn_dist
