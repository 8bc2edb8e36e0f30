// Converters into nn_dist's HDF5 format (X: samples x features, y: labels or
// targets), streaming: a file larger than memory converts in chunks of rows.
// Errors name the input file and, for CSV, the line and column.
#pragma once

#include <string>
#include <vector>

namespace nn_dist {

struct CsvOptions {
  std::string input, output;
  std::string label;              // the label column: a header name, or an index (0-based; -1 = last); "" = last
  char delimiter = ',';
  long skip_lines = 0;            // lines before the header or data (a preamble)
  std::string header = "auto";    // yes | no | auto (a first line whose feature fields are not all numbers)
  std::string label_type = "auto";  // int | float | string | auto (decided from the first chunk of rows)
  std::string classes_from;         // a data file or checkpoint whose label_names number the classes ("": sorted)
  long chunk_rows = 65536;
};

struct ConvertSummary {
  long rows = 0, features = 0;
  std::string label_name;                // the label column's header name, or its index
  std::string label_type;                // int, float or string
  std::vector<std::string> class_names;  // string labels: class i is class_names[i]
};

// CSV -> HDF5: X float32, y int64 (int and string labels) or float32 (float
// targets). String labels are classes numbered in sorted (byte) order of
// their names, as scikit-learn's LabelEncoder numbers them, so files
// converted apart agree whatever order their rows come in; or in the order
// of classes_from's label_names. The class names are stored in the dataset
// 'label_names', a header's feature names (the label column's aside) in
// 'feature_names'. Written under a temporary name (see temporary_path) and
// renamed into place when complete.
ConvertSummary convert_csv(const CsvOptions& options);

// MNIST-style IDX (unsigned bytes) -> HDF5: X uint8 (samples x pixels), y uint8.
ConvertSummary convert_idx(const std::string& images, const std::string& labels, const std::string& output,
                           long chunk_rows = 4096);

}  // namespace nn_dist
