// nn_convert: other data formats into nn_dist's HDF5 (X, y).
//   nn_convert csv --input data.csv --out data.h5 [--label NAME|INDEX] [--header auto|yes|no]
//                  [--delimiter ,] [--label-type auto|int|float|string] [--skip-lines N] [--classes-from FILE]
//   nn_convert idx --images train-images-idx3-ubyte --labels train-labels-idx1-ubyte --out mnist.h5
#include <boost/program_options.hpp>
#include <cstdio>
#include <string>

#include "nn_dist/cli/options.hpp"
#include "nn_dist/common/error.hpp"
#include "nn_dist/common/text.hpp"
#include "nn_dist/io/convert.hpp"
#include "nn_dist/io/files.hpp"

namespace po = boost::program_options;
using namespace nn_dist;

namespace {

const ProgramHelp kProgram{"nn_convert",
                           "other data formats into nn_dist's HDF5 (X, y); nn_convert FORMAT --help lists a format's "
                           "options",
                           {"nn_convert csv --input data.csv --out data.h5 [options]",
                            "nn_convert idx --images IMAGES.idx --labels LABELS.idx --out data.h5"}};

// Temporary files of earlier conversions to `out` whose process is gone
// (killed by SIGKILL, or on a crash): removed, each named. A live writer's stays.
void remove_leftovers(const std::string& out) {
  for (const std::string& file : remove_stale_temporaries(out)) {
    std::printf("note: removed %s, left by an earlier nn_convert that was killed while writing\n",
                printable(file, 200).c_str());
  }
}

void print(const ConvertSummary& s, const std::string& out, const std::string& classes_from = "") {
  std::printf("nn_convert: wrote %s: %ld samples x %ld features, labels from column %s (%s)", out.c_str(), s.rows,
              s.features, printable(s.label_name, 80).c_str(), s.label_type.c_str());
  if (!s.class_names.empty()) {
    std::printf(", %zu classes:", s.class_names.size());
    for (std::size_t i = 0; i < s.class_names.size() && i < 20; ++i) {
      std::printf(" %zu=%s", i, printable(s.class_names[i], 40).c_str());
    }
    if (s.class_names.size() > 20) std::printf(" ...");
    std::printf(classes_from.empty() ? " (sorted by name)" : " (classes from --classes-from %s)",
                printable(classes_from, 200).c_str());
  }
  std::printf("\n");
}

// nn_convert csv's options into *o (the delimiter as text, checked after).
po::options_description csv_options(CsvOptions* o, std::string* delimiter) {
  po::options_description table = option_table();
  table.add_options()
      ("input", po::value(&o->input), "CSV file, one sample per line")
      ("out", po::value(&o->output), "HDF5 file to write")
      ("label", po::value(&o->label), "label column: header name or 0-based index (-1: last); default: the last")
      ("header", po::value(&o->header)->default_value("auto"),
       "yes|no|auto: auto takes the first line as a header if its feature fields are not all numbers")
      ("delimiter", po::value(delimiter)->default_value(","), "field separator (one character; \\t for tab)")
      ("label-type", po::value(&o->label_type)->default_value("auto"),
       "int|float|string|auto: auto decides from the first chunk of rows (string labels become classes 0, 1, "
       "... in sorted order of their names)")
      ("classes-from", po::value(&o->classes_from),
       "number the classes as this file does (its label_names: a file nn_convert wrote, or a checkpoint)")
      ("skip-lines", po::value(&o->skip_lines)->default_value(0), "lines to skip before the header or data")
      ("chunk-rows", po::value(&o->chunk_rows)->default_value(o->chunk_rows), "rows converted at a time");
  return table;
}

int run_csv(int argc, char** argv) {
  const ProgramHelp program{"nn_convert csv", "CSV rows (features and a label) into nn_dist's HDF5",
                            {"nn_convert csv --input data.csv --out data.h5 [options]"}};
  CsvOptions o;
  std::string delimiter = ",", help;
  if (!parse_options(argc, argv, program, csv_options(&o, &delimiter), &help)) {
    std::printf("%s", help.c_str());
    return 0;
  }
  if (o.input.empty()) throw Error("--input: required (the CSV file)");
  if (o.output.empty()) throw Error("--out: required (the HDF5 file to write)");
  if (delimiter == "\\t" || delimiter == "tab") delimiter = "\t";
  if (delimiter.size() != 1 || delimiter == "\"") {
    throw Error("--delimiter: must be one character other than a quote, got '" + printable(delimiter) + "'");
  }
  if (o.chunk_rows < 1) throw Error("--chunk-rows: must be at least 1");
  if (o.skip_lines < 0) throw Error("--skip-lines: must not be negative");
  o.delimiter = delimiter[0];
  remove_leftovers(o.output);
  print(convert_csv(o), o.output, o.classes_from);
  return 0;
}

int run_idx(int argc, char** argv) {
  const ProgramHelp program{"nn_convert idx", "MNIST-style IDX files (unsigned bytes) into nn_dist's HDF5",
                            {"nn_convert idx --images IMAGES.idx --labels LABELS.idx --out data.h5"}};
  std::string images, labels, out, help;
  po::options_description table = option_table();
  table.add_options()
      ("images", po::value(&images), "IDX file of images (unsigned bytes, e.g. train-images-idx3-ubyte)")
      ("labels", po::value(&labels), "IDX file of labels (unsigned bytes)")
      ("out", po::value(&out), "HDF5 file to write (X and y as uint8)");
  if (!parse_options(argc, argv, program, table, &help)) {
    std::printf("%s", help.c_str());
    return 0;
  }
  if (images.empty() || labels.empty() || out.empty()) throw Error("--images, --labels and --out are required");
  remove_leftovers(out);
  print(convert_idx(images, labels, out), out);
  return 0;
}

// argv[1] names the format; its options follow.
int run(int argc, char** argv) {
  const std::string format = argc > 1 ? argv[1] : "";
  if (format == "-h" || format == "--help") {
    std::printf("%s", help_text(kProgram, option_table()).c_str());
    return 0;
  }
  if (format == "csv") return run_csv(argc - 1, argv + 1);
  if (format == "idx") return run_idx(argc - 1, argv + 1);
  throw Error(format.empty() ? "give a format: csv or idx (nn_convert --help shows the usage)"
                             : "unknown format '" + printable(format) + "' (expected csv or idx)");
}

}  // namespace

int main(int argc, char** argv) {
  remove_temporary_file_on_signals();
  return program_main("nn_convert", [&] { return run(argc, argv); });
}
