// CSV and IDX to HDF5, in chunks of rows appended to extendible datasets.
#include "nn_dist/io/convert.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <memory>

#include "io/h5util.hpp"
#include "io/names_h5.hpp"
#include "nn_dist/common/error.hpp"
#include "nn_dist/common/text.hpp"
#include "nn_dist/io/files.hpp"
#include "nn_dist/io/names.hpp"

namespace nn_dist {

namespace {

// Appends rows to X (n, features) and y (n) or (n, width) in a new HDF5 file
// written under a temporary name; commit() renames it into place, and a
// writer destroyed without commit() removes it, as does a signal (when the
// program has remove_temporary_file_on_signals).
class RowWriter {
 public:
  RowWriter(const std::string& output, const std::string& what, long features, hid_t x_type, hid_t y_type,
            long chunk_rows)
      : output_(output), what_(what), features_(features), x_type_(x_type), y_type_(y_type), chunk_rows_(chunk_rows) {
    require_output_file(output, what);
    temp_ = temporary_path(output);
    set_temporary_file(temp_);
    h5::quiet_errors();
    file_ = H5Fcreate(temp_.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (file_ < 0) {
      set_temporary_file("");
      throw Error(what_ + ": cannot create " + temp_);
    }
    x_ = create("X", x_type_, features_, chunk_rows);
    y_ = create("y", y_type_, 0, chunk_rows);
  }
  ~RowWriter() {
    close();
    if (!committed_) ::unlink(temp_.c_str());
    set_temporary_file("");
  }
  hid_t file() const { return file_; }

  // Renumbers the int64 labels written so far: label k becomes to[k].
  void renumber_labels(const std::vector<int64_t>& to) {
    std::vector<int64_t> y;
    for (long at = 0; at < rows_; at += chunk_rows_) {
      const long n = std::min(chunk_rows_, rows_ - at);
      const hsize_t start = static_cast<hsize_t>(at), count = static_cast<hsize_t>(n);
      y.resize(static_cast<std::size_t>(n));
      h5::Handle file_space(H5Dget_space(y_), H5Sclose);
      H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, &start, nullptr, &count, nullptr);
      h5::Handle mem_space(H5Screate_simple(1, &count, nullptr), H5Sclose);
      if (H5Dread(y_, H5T_NATIVE_INT64, mem_space.get(), file_space.get(), H5P_DEFAULT, y.data()) < 0) {
        throw Error(what_ + ": cannot read back the labels written");
      }
      for (int64_t& label : y) label = to[static_cast<std::size_t>(label)];
      if (H5Dwrite(y_, H5T_NATIVE_INT64, mem_space.get(), file_space.get(), H5P_DEFAULT, y.data()) < 0) {
        throw Error(what_ + ": write failed (disk full?)");
      }
    }
  }

  // rows x features values in x (row-major, of x_type's native form), rows labels in y.
  void append(const void* x, const void* y, long rows, hid_t x_mem, hid_t y_mem) {
    if (rows == 0) return;
    extend_and_write(x_, x, rows, features_, x_mem);
    extend_and_write(y_, y, rows, 0, y_mem);
    rows_ += rows;
  }
  void commit() {
    close();
    if (std::rename(temp_.c_str(), output_.c_str()) != 0) {
      throw Error(what_ + ": cannot rename the new file into place (" + std::string(std::strerror(errno)) + ")");
    }
    committed_ = true;
  }

 private:
  hid_t create(const char* name, hid_t type, long width, long chunk_rows) {
    const int rank = width > 0 ? 2 : 1;
    const hsize_t dims[2] = {0, static_cast<hsize_t>(width)};
    const hsize_t max[2] = {H5S_UNLIMITED, static_cast<hsize_t>(width)};
    const hsize_t chunk[2] = {static_cast<hsize_t>(std::max<long>(1, std::min<long>(chunk_rows, 1 << 20))),
                              static_cast<hsize_t>(std::max<long>(width, 1))};
    h5::Handle space(H5Screate_simple(rank, dims, max), H5Sclose);
    h5::Handle plist(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
    H5Pset_chunk(plist.get(), rank, chunk);
    const hid_t ds = H5Dcreate2(file_, name, type, space.get(), H5P_DEFAULT, plist.get(), H5P_DEFAULT);
    if (ds < 0) throw Error(what_ + ": cannot create dataset '" + std::string(name) + "'");
    return ds;
  }
  void extend_and_write(hid_t ds, const void* data, long rows, long width, hid_t mem_type) {
    const int rank = width > 0 ? 2 : 1;
    const hsize_t size[2] = {static_cast<hsize_t>(rows_ + rows), static_cast<hsize_t>(width)};
    const hsize_t start[2] = {static_cast<hsize_t>(rows_), 0};
    const hsize_t count[2] = {static_cast<hsize_t>(rows), static_cast<hsize_t>(width)};
    if (H5Dset_extent(ds, size) < 0) throw Error(what_ + ": cannot grow the datasets (disk full?)");
    h5::Handle file_space(H5Dget_space(ds), H5Sclose);
    H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start, nullptr, count, nullptr);
    h5::Handle mem_space(H5Screate_simple(rank, count, nullptr), H5Sclose);
    if (H5Dwrite(ds, mem_type, mem_space.get(), file_space.get(), H5P_DEFAULT, data) < 0) {
      throw Error(what_ + ": write failed (disk full?)");
    }
  }
  void close() {
    if (x_ >= 0) H5Dclose(x_);
    if (y_ >= 0) H5Dclose(y_);
    x_ = y_ = -1;
    if (file_ >= 0 && H5Fclose(file_) < 0 && !committed_) {
      file_ = -1;
      throw Error(what_ + ": closing the new file failed (disk full?)");
    }
    file_ = -1;
  }

  std::string output_, what_, temp_;
  long features_;
  hid_t x_type_, y_type_;
  long chunk_rows_;
  hid_t file_ = -1, x_ = -1, y_ = -1;
  long rows_ = 0;
  bool committed_ = false;
};

// ---- CSV

// Splits one line into fields: `delimiter` separates; a field in double quotes
// may hold the delimiter, and "" inside it stands for one quote.
std::vector<std::string> split(const std::string& line, char delimiter, const std::string& where) {
  std::vector<std::string> fields;
  std::string field;
  std::size_t i = 0;
  while (true) {
    field.clear();
    if (i < line.size() && line[i] == '"') {
      ++i;
      while (true) {
        if (i >= line.size()) throw Error(where + ": a quoted field is not closed (quotes across lines are not supported)");
        if (line[i] == '"') {
          if (i + 1 < line.size() && line[i + 1] == '"') {
            field += '"';
            i += 2;
            continue;
          }
          ++i;
          break;
        }
        field += line[i++];
      }
      if (i < line.size() && line[i] != delimiter) {
        throw Error(where + ": text after a closing quote (expected the delimiter '" + std::string(1, delimiter) + "')");
      }
    } else {
      while (i < line.size() && line[i] != delimiter) field += line[i++];
    }
    fields.push_back(field);
    if (i >= line.size()) break;
    ++i;  // the delimiter
  }
  return fields;
}

std::string trim(const std::string& s) {
  const std::size_t a = s.find_first_not_of(" \t");
  if (a == std::string::npos) return "";
  return s.substr(a, s.find_last_not_of(" \t") - a + 1);
}

// What a field holds: a value of the type asked for, or why not.
enum class Field { kValue, kEmpty, kNotANumber, kNotFinite, kOutOfRange };

// A number too large for the type is still a number (a label column of them
// is numeric): only kEmpty and kNotANumber say the text is not one.
bool is_number(Field f) { return f != Field::kEmpty && f != Field::kNotANumber; }

// A float32 value. Values below float32's smallest round to 0 (or a
// subnormal), as any float32 conversion rounds them: not an error.
Field parse_float32(const std::string& text, float* out) {
  const std::string t = trim(text);
  if (t.empty()) return Field::kEmpty;
  errno = 0;
  char* end = nullptr;
  const double v = std::strtod(t.c_str(), &end);
  if (end != t.c_str() + t.size()) return Field::kNotANumber;
  if (std::isnan(v) || (std::isinf(v) && errno != ERANGE)) return Field::kNotFinite;  // "nan", "inf"
  if (std::fabs(v) > std::numeric_limits<float>::max()) return Field::kOutOfRange;  // HUGE_VAL on overflow too
  *out = static_cast<float>(v);
  return Field::kValue;
}

Field parse_int(const std::string& text, long long* out) {
  const std::string t = trim(text);
  if (t.empty()) return Field::kEmpty;
  errno = 0;
  char* end = nullptr;
  *out = std::strtoll(t.c_str(), &end, 10);
  if (end != t.c_str() + t.size()) return Field::kNotANumber;
  return errno == ERANGE ? Field::kOutOfRange : Field::kValue;
}

// Why a field is not a value of `type` ("float32", "int64"), for an error line.
std::string field_problem(Field f, const std::string& text, const std::string& type) {
  const std::string shown = "'" + printable(text, 40) + "'";
  switch (f) {
    case Field::kEmpty: return "the field is empty";
    case Field::kNotANumber: return shown + (type == "int64" ? " is not an integer" : " is not a number");
    case Field::kNotFinite: return shown + " is not a finite " + type + " number";
    case Field::kOutOfRange:
      return shown + " is out of " + type + "'s range (" +
             (type == "int64" ? "-9223372036854775808 to 9223372036854775807" : "magnitudes up to 3.4e38") + ")";
    case Field::kValue: break;
  }
  return "";
}

class CsvReader {
 public:
  CsvReader(const std::string& path, const std::string& what) : what_(what), in_(path, std::ios::binary) {
    if (!in_) throw Error(what_ + ": cannot be opened (" + std::string(std::strerror(errno)) + ")");
  }
  // The next non-empty line, split; false at the end.
  void skip(long lines) {
    std::string line;
    while (line_no_ < lines && std::getline(in_, line)) ++line_no_;
  }
  bool next(char delimiter, std::vector<std::string>* fields) {
    std::string line;
    while (std::getline(in_, line)) {
      ++line_no_;
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line_no_ == 1 && line.compare(0, 3, "\xEF\xBB\xBF") == 0) line.erase(0, 3);  // a UTF-8 byte order mark
      if (trim(line).empty()) continue;
      *fields = split(line, delimiter, where());
      return true;
    }
    if (in_.bad()) throw Error(what_ + ": read failed (" + std::string(std::strerror(errno)) + ")");
    return false;
  }
  long line() const { return line_no_; }
  std::string where() const { return what_ + ": line " + std::to_string(line_no_); }

 private:
  std::string what_;
  std::ifstream in_;
  long line_no_ = 0;
};

// The classes --classes-from names: a data file's label_names, or a checkpoint's /model/label_names.
std::vector<std::string> classes_of(const std::string& path) {
  const std::string what = "--classes-from " + path;
  h5::Handle file = h5::open_file(path, what);
  DataNames names = read_names(file.get(), what, "");
  if (names.labels.empty() && h5::exists(file.get(), "model")) {
    h5::Handle model(H5Gopen2(file.get(), "model", H5P_DEFAULT), H5Gclose);
    if (model.valid()) names = read_names(model.get(), what, "/model/");
  }
  if (names.labels.empty()) {
    throw Error(what + ": has no 'label_names' (its labels are not named classes): give a file nn_convert wrote "
                "from text labels, or a checkpoint trained on one");
  }
  return names.labels;
}

// The flags' values, and the files: inputs readable, the output writable, none the same file.
void check_csv_options(const CsvOptions& o) {
  require_input_file(o.input, o.input);
  require_output_file(o.output, "--out " + o.output);
  if (!o.classes_from.empty()) require_input_file(o.classes_from, "--classes-from " + o.classes_from);
  require_distinct_files({{"--input", o.input}, {"--classes-from", o.classes_from}}, {{"--out", o.output}}, {});
  if (o.header != "yes" && o.header != "no" && o.header != "auto") {
    throw Error("--header: unknown value '" + printable(o.header) + "' (expected yes, no or auto)");
  }
  if (o.label_type != "int" && o.label_type != "float" && o.label_type != "string" && o.label_type != "auto") {
    throw Error("--label-type: unknown value '" + printable(o.label_type) + "' (expected int, float, string or auto)");
  }
  if (!o.classes_from.empty() && (o.label_type == "int" || o.label_type == "float")) {
    throw Error("--label-type " + o.label_type + ": --classes-from makes the labels named classes (string)");
  }
}

// The columns of a CSV file, from its first row: how many, which is the
// label, and their names if the first row is a header.
struct CsvColumns {
  long count = 0, label = 0;
  bool header = false;
  std::vector<std::string> names;  // with a header: each column's name, trimmed
  std::vector<std::string> first;  // the first row's fields
  long first_line = 0;

  // For messages: 'name' with a header, else the index.
  std::string name(long c) const { return header ? "'" + printable(names[c], 60) + "'" : std::to_string(c); }
};

// --label as a 0-based index (-1: the last) into the first row's columns;
// false when it is a name.
bool label_by_index(const CsvOptions& o, CsvColumns* c) {
  c->label = c->count - 1;
  long long index = 0;
  if (o.label.empty()) return true;
  if (!is_number(parse_int(o.label, &index))) return false;
  if (index < -c->count || index >= c->count) {
    throw Error("--label " + o.label + ": there are " + std::to_string(c->count) + " columns (0.." +
                std::to_string(c->count - 1) + ", or -1 for the last)");
  }
  c->label = static_cast<long>(index < 0 ? c->count + index : index);
  return true;
}

// The header's names, each once (one name on two columns would let --label
// take either, and the other be a feature: perhaps the label itself, leaked
// into the inputs); with --label NAME, its column.
void read_header_names(const CsvOptions& o, bool by_name, CsvColumns* c) {
  c->names = c->first;
  for (std::string& n : c->names) n = trim(n);
  std::map<std::string, long> column_of;
  for (long k = 0; k < c->count; ++k) {
    const auto [it, fresh] = column_of.emplace(c->names[k], k);
    if (!fresh) {
      throw Error(o.input + ": line " + std::to_string(c->first_line) + ": the header names column '" +
                  printable(c->names[k], 60) + "' twice (columns " + std::to_string(it->second) + " and " +
                  std::to_string(k) + "); give each column its own name");
    }
  }
  if (!by_name) return;
  const auto it = column_of.find(o.label);
  if (it == column_of.end()) {
    std::string list;
    for (long k = 0; k < c->count && k < 20; ++k) list += (k ? ", " : "") + printable(c->names[k], 40);
    throw Error("--label " + printable(o.label) + ": no such column in the header of " + o.input + " (" + list +
                (c->count > 20 ? ", ..." : "") + ")");
  }
  c->label = it->second;
}

// The first row decides the columns; a header is a first row whose feature
// fields are not all numbers (--header auto), or one --header yes or a
// --label NAME asks for.
CsvColumns read_columns(const CsvOptions& o, CsvReader* csv) {
  CsvColumns c;
  if (!csv->next(o.delimiter, &c.first)) throw Error(o.input + ": is empty (no rows)");
  c.first_line = csv->line();
  c.count = static_cast<long>(c.first.size());
  if (c.count < 2) {
    throw Error(csv->where() + ": has 1 field; a row needs features and a label (is --delimiter '" +
                std::string(1, o.delimiter) + "' right?)");
  }
  const bool by_name = !label_by_index(o, &c);
  c.header = o.header == "yes" || by_name;
  if (by_name && o.header == "no") throw Error("--label " + o.label + ": a column name needs a header line (--header no was given)");
  if (o.header == "auto" && !by_name) {
    float v = 0;
    for (long k = 0; k < c.count; ++k) {
      if (k != c.label && !is_number(parse_float32(c.first[k], &v))) c.header = true;
    }
  }
  if (c.header) read_header_names(o, by_name, &c);
  return c;
}

using PendingRows = std::vector<std::pair<long, std::vector<std::string>>>;  // (line number, fields)

// int, float or string: --label-type, or for auto what every label of the
// first rows can be read as.
std::string label_type(const CsvOptions& o, const PendingRows& rows, const CsvColumns& columns) {
  if (!o.classes_from.empty()) return "string";
  if (o.label_type != "auto") return o.label_type;
  bool ints = true, numbers = true;
  long long i = 0;
  float v = 0;
  for (const auto& [line_no, row] : rows) {
    (void)line_no;
    if (static_cast<long>(row.size()) != columns.count) continue;  // reported with its line when converted
    ints = ints && is_number(parse_int(row[columns.label], &i));
    numbers = numbers && is_number(parse_float32(row[columns.label], &v));
  }
  return ints ? "int" : numbers ? "float" : "string";
}

// Rows into X and y, a chunk at a time. Text labels are numbered as they
// first appear (or as --classes-from numbers them); sort_classes renumbers
// them in sorted order at the end.
class CsvRows {
 public:
  CsvRows(const CsvOptions& o, const CsvColumns& columns, const std::string& type, ConvertSummary* summary,
          RowWriter* writer)
      : o_(o), columns_(columns), type_(type), summary_(summary), writer_(writer) {
    for (std::size_t k = 0; k < summary->class_names.size(); ++k) class_of_.emplace(summary->class_names[k], k);
  }

  void add(const std::vector<std::string>& row, long line_no) {
    const std::string where = o_.input + ": line " + std::to_string(line_no);
    if (static_cast<long>(row.size()) != columns_.count) {
      throw Error(where + ": has " + std::to_string(row.size()) + " fields, expected " +
                  std::to_string(columns_.count) + " (as in " + (columns_.header ? "the header" : "the first row") +
                  ")");
    }
    for (long c = 0; c < columns_.count; ++c) {
      if (c == columns_.label) continue;
      float v = 0;
      const Field f = parse_float32(row[c], &v);
      if (f != Field::kValue) {
        throw Error(where + ", column " + columns_.name(c) + ": " + field_problem(f, row[c], "float32"));
      }
      x_.push_back(v);
    }
    add_label(row[columns_.label], where + ", label column " + columns_.name(columns_.label) + ": ");
  }

  // Appends the rows added since the last flush to the file.
  void flush(long rows) {
    const bool float_y = type_ == "float";
    writer_->append(x_.data(), float_y ? static_cast<const void*>(y_float_.data()) : y_int_.data(), rows,
                    H5T_NATIVE_FLOAT, float_y ? H5T_NATIVE_FLOAT : H5T_NATIVE_INT64);
    summary_->rows += rows;
    x_.clear();
    y_int_.clear();
    y_float_.clear();
  }

  // Text labels numbered as they came: class i becomes its place among the names sorted.
  void sort_classes() {
    std::vector<std::string>& names = summary_->class_names;
    if (!o_.classes_from.empty() || std::is_sorted(names.begin(), names.end())) return;
    std::vector<std::string> sorted = names;
    std::sort(sorted.begin(), sorted.end());
    std::vector<int64_t> to(sorted.size());
    for (std::size_t k = 0; k < sorted.size(); ++k) to[class_of_.at(sorted[k])] = static_cast<int64_t>(k);
    writer_->renumber_labels(to);
    names = std::move(sorted);
  }

 private:
  void add_label(const std::string& l, const std::string& at_label) {
    if (type_ == "int") {
      long long v = 0;
      const Field f = parse_int(l, &v);
      if (f != Field::kValue) {
        const char* hint = ", but the labels are integers (give --label-type float or string)";
        throw Error(at_label + field_problem(f, l, "int64") + (f == Field::kNotANumber ? hint : ""));
      }
      y_int_.push_back(v);
    } else if (type_ == "float") {
      float v = 0;
      const Field f = parse_float32(l, &v);
      if (f != Field::kValue) {
        throw Error(at_label + field_problem(f, l, "float32") +
                    (f == Field::kNotANumber ? ", but the labels are numbers (give --label-type string)" : ""));
      }
      y_float_.push_back(v);
    } else {
      y_int_.push_back(class_number(trim(l), at_label));
    }
  }

  long class_number(const std::string& key, const std::string& at_label) {
    if (key.empty()) throw Error(at_label + "the label is empty");
    auto it = class_of_.find(key);
    if (it == class_of_.end() && !o_.classes_from.empty()) {
      throw Error(at_label + "'" + printable(key, 40) + "' is not one of the " +
                  std::to_string(summary_->class_names.size()) + " classes of --classes-from " + o_.classes_from +
                  " (" + names_text(summary_->class_names) + ")");
    }
    if (it == class_of_.end()) {
      it = class_of_.emplace(key, static_cast<long>(summary_->class_names.size())).first;
      summary_->class_names.push_back(key);
    }
    return it->second;
  }

  const CsvOptions& o_;
  const CsvColumns& columns_;
  std::string type_;
  ConvertSummary* summary_;
  RowWriter* writer_;
  std::map<std::string, long> class_of_;
  std::vector<float> x_;
  std::vector<int64_t> y_int_;
  std::vector<float> y_float_;
};

// The class and feature names, and where the file came from.
void write_csv_names(const CsvOptions& o, const CsvColumns& columns, const ConvertSummary& summary,
                     RowWriter* writer) {
  DataNames stored;
  stored.labels = summary.class_names;
  if (columns.header) {
    stored.features = columns.names;
    stored.features.erase(stored.features.begin() + columns.label);
  }
  write_names(writer->file(), stored);
  h5::Handle root(H5Oopen(writer->file(), "/", H5P_DEFAULT), H5Oclose);
  h5::write_attr_string(root.get(), "source", "nn_convert csv " + std::filesystem::path(o.input).filename().string());
  h5::write_attr_string(root.get(), "label_column", summary.label_name);
}

}  // namespace

ConvertSummary convert_csv(const CsvOptions& o) {
  check_csv_options(o);
  ConvertSummary summary;
  if (!o.classes_from.empty()) summary.class_names = classes_of(o.classes_from);
  CsvReader csv(o.input, o.input);
  csv.skip(o.skip_lines);
  const CsvColumns columns = read_columns(o, &csv);
  const long chunk = std::max<long>(1, o.chunk_rows);
  summary.features = columns.count - 1;
  summary.label_name = columns.header ? columns.names[columns.label] : std::to_string(columns.label);
  // The first chunk of rows is held until the label type is known.
  PendingRows pending;
  if (!columns.header) pending.emplace_back(csv.line(), columns.first);
  std::vector<std::string> fields;
  while (static_cast<long>(pending.size()) < chunk && csv.next(o.delimiter, &fields)) {
    pending.emplace_back(csv.line(), fields);
  }
  if (pending.empty()) throw Error(o.input + ": has a header line but no data rows");
  summary.label_type = label_type(o, pending, columns);
  RowWriter writer(o.output, "--out " + o.output, summary.features, H5T_IEEE_F32LE,
                   summary.label_type == "float" ? H5T_IEEE_F32LE : H5T_STD_I64LE, chunk);
  CsvRows rows(o, columns, summary.label_type, &summary, &writer);
  for (const auto& [line_no, row] : pending) rows.add(row, line_no);
  rows.flush(static_cast<long>(pending.size()));
  pending.clear();
  long held = 0;
  while (csv.next(o.delimiter, &fields)) {
    rows.add(fields, csv.line());
    if (++held == chunk) {
      rows.flush(held);
      held = 0;
    }
  }
  rows.flush(held);
  rows.sort_classes();
  write_csv_names(o, columns, summary, &writer);
  writer.commit();
  return summary;
}

// ---- IDX

namespace {

struct IdxHeader {
  std::vector<uint32_t> dims;
  long header_bytes = 0;
  uint64_t items() const {
    uint64_t n = 1;
    for (uint32_t d : dims) n *= d;
    return n;
  }
};

IdxHeader read_idx_header(std::FILE* f, const std::string& what) {
  unsigned char magic[4];
  if (std::fread(magic, 1, 4, f) != 4) throw Error(what + ": is too short for an IDX file (no 4-byte magic number)");
  if (magic[0] != 0 || magic[1] != 0) {
    char hex[16];
    std::snprintf(hex, sizeof hex, "%02x%02x%02x%02x", magic[0], magic[1], magic[2], magic[3]);
    throw Error(what + ": magic number 0x" + std::string(hex) +
                " is not IDX (expected 0x0000TTDD; a gzip file starts 1f8b: gunzip it first)");
  }
  if (magic[2] != 0x08) {
    char hex[8];
    std::snprintf(hex, sizeof hex, "0x%02x", magic[2]);
    const char* kind = magic[2] == 0x09   ? " (signed bytes)"
                       : magic[2] == 0x0B ? " (int16)"
                       : magic[2] == 0x0C ? " (int32)"
                       : magic[2] == 0x0D ? " (float32)"
                       : magic[2] == 0x0E ? " (float64)"
                                          : "";
    throw Error(what + ": IDX element type " + hex + kind +
                " is not supported (only 0x08, unsigned bytes, as MNIST uses)");
  }
  IdxHeader h;
  const int n = magic[3];
  if (n < 1) throw Error(what + ": IDX header has 0 dimensions");
  for (int i = 0; i < n; ++i) {
    unsigned char b[4];
    if (std::fread(b, 1, 4, f) != 4) throw Error(what + ": IDX header is cut short (dimension " + std::to_string(i) + ")");
    h.dims.push_back((uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | b[3]);
  }
  h.header_bytes = 4 + 4L * n;
  return h;
}

std::string dims_text(const IdxHeader& h) {
  std::string s;
  for (uint32_t d : h.dims) s += (s.empty() ? "" : " x ") + std::to_string(d);
  return s;
}

void require_idx_size(const std::string& path, const IdxHeader& h, const std::string& what) {
  const uint64_t expected = static_cast<uint64_t>(h.header_bytes) + h.items();
  const uint64_t actual = std::filesystem::file_size(path);
  if (actual != expected) {
    throw Error(what + ": holds " + std::to_string(actual) + " bytes, but its header (" + dims_text(h) +
                " unsigned bytes) needs " + std::to_string(expected) + (actual < expected ? " (truncated?)" : ""));
  }
}

}  // namespace

ConvertSummary convert_idx(const std::string& images, const std::string& labels, const std::string& output,
                           long chunk_rows) {
  const std::string wi = "--images " + images, wl = "--labels " + labels;
  require_input_file(images, wi);
  require_input_file(labels, wl);
  require_output_file(output, "--out " + output);
  require_distinct_files({{"--images", images}, {"--labels", labels}}, {{"--out", output}}, {});
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> fi(std::fopen(images.c_str(), "rb"), std::fclose);
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> fl(std::fopen(labels.c_str(), "rb"), std::fclose);
  if (!fi || !fl) throw Error((fi ? wl : wi) + ": cannot be opened (" + std::string(std::strerror(errno)) + ")");
  const IdxHeader hi = read_idx_header(fi.get(), wi), hl = read_idx_header(fl.get(), wl);
  require_idx_size(images, hi, wi);
  require_idx_size(labels, hl, wl);
  if (hi.dims.size() < 2) throw Error(wi + ": has " + dims_text(hi) + " items; images need 2 or more dimensions");
  if (hl.dims.size() != 1) throw Error(wl + ": has shape " + dims_text(hl) + "; labels need 1 dimension");
  if (hi.dims[0] != hl.dims[0]) {
    throw Error(wi + ": holds " + std::to_string(hi.dims[0]) + " images but " + wl + " holds " +
                std::to_string(hl.dims[0]) + " labels");
  }
  if (hi.dims[0] == 0) throw Error(wi + ": holds no images");
  ConvertSummary summary;
  summary.features = static_cast<long>(hi.items() / hi.dims[0]);
  summary.label_type = "int";
  summary.label_name = "labels";
  const long chunk = std::max<long>(1, chunk_rows);
  RowWriter writer(output, "--out " + output, summary.features, H5T_STD_U8LE, H5T_STD_U8LE, chunk);
  std::vector<unsigned char> x(static_cast<std::size_t>(chunk * summary.features)), y(static_cast<std::size_t>(chunk));
  for (long done = 0, n = hi.dims[0]; done < n;) {
    const long rows = std::min(chunk, n - done);
    if (std::fread(x.data(), static_cast<std::size_t>(summary.features), rows, fi.get()) != static_cast<std::size_t>(rows) ||
        std::fread(y.data(), 1, rows, fl.get()) != static_cast<std::size_t>(rows)) {
      throw Error(wi + ": read failed at image " + std::to_string(done));
    }
    writer.append(x.data(), y.data(), rows, H5T_NATIVE_UCHAR, H5T_NATIVE_UCHAR);
    done += rows;
    summary.rows = done;
  }
  {
    h5::Handle root(H5Oopen(writer.file(), "/", H5P_DEFAULT), H5Oclose);
    h5::write_attr_string(root.get(), "source", "nn_convert idx " + std::filesystem::path(images).filename().string() +
                                                    " " + std::filesystem::path(labels).filename().string());
    h5::write_attr_ints(root.get(), "image_shape",
                        std::vector<long long>(hi.dims.begin() + 1, hi.dims.end()));
  }
  writer.commit();
  return summary;
}

}  // namespace nn_dist
