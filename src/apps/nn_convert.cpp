// nn_convert: other data formats into nn_dist's HDF5 (X, y).
//   nn_convert csv --input data.csv --out data.h5 [--label NAME|INDEX] [--header auto|yes|no]
//                  [--delimiter ,] [--label-type auto|int|float|string] [--skip-lines N] [--classes-from FILE]
//   nn_convert idx --images train-images-idx3-ubyte --labels train-labels-idx1-ubyte --out mnist.h5
#include <boost/program_options.hpp>
#include <cstdio>
#include <cstring>
#include <exception>
#include <sstream>
#include <string>

#include "nn_dist/cli/tool_options.hpp"
#include "nn_dist/common/error.hpp"
#include "nn_dist/common/text.hpp"
#include "nn_dist/io/convert.hpp"
#include "nn_dist/io/files.hpp"

namespace po = boost::program_options;
using namespace nn_dist;

namespace {

constexpr const char* kUsage =
    "Usage: nn_convert csv --input data.csv --out data.h5 [options]\n"
    "       nn_convert idx --images IMAGES.idx --labels LABELS.idx --out data.h5\n";

// Parses argv[2..] against desc; returns false for --help.
bool parse(int argc, char** argv, const po::options_description& desc) {
  const po::variables_map vm = parse_tool_options(argc - 1, argv + 1, desc);
  if (vm.count("help")) {
    std::ostringstream s;
    s << kUsage << "\n" << desc;
    std::printf("%s", s.str().c_str());
    return false;
  }
  return true;
}

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

int run(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "-h" || mode == "--help") {
    std::printf("%s", kUsage);
    return 0;
  }
  if (mode == "csv") {
    CsvOptions o;
    std::string delimiter = ",";
    po::options_description desc("nn_convert csv", 100);
    desc.add_options()
        ("help,h", "show this help")
        ("input", po::value(&o.input), "CSV file, one sample per line")
        ("out", po::value(&o.output), "HDF5 file to write")
        ("label", po::value(&o.label), "label column: header name or 0-based index (-1: last); default: the last")
        ("header", po::value(&o.header)->default_value("auto"),
         "yes|no|auto: auto takes the first line as a header if its feature fields are not all numbers")
        ("delimiter", po::value(&delimiter)->default_value(","), "field separator (one character; \\t for tab)")
        ("label-type", po::value(&o.label_type)->default_value("auto"),
         "int|float|string|auto: auto decides from the first chunk of rows (string labels become classes 0, 1, "
         "... in sorted order of their names)")
        ("classes-from", po::value(&o.classes_from),
         "number the classes as this file does (its label_names: a file nn_convert wrote, or a checkpoint)")
        ("skip-lines", po::value(&o.skip_lines)->default_value(0), "lines to skip before the header or data")
        ("chunk-rows", po::value(&o.chunk_rows)->default_value(o.chunk_rows), "rows converted at a time");
    if (!parse(argc, argv, desc)) return 0;
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
  if (mode == "idx") {
    std::string images, labels, out;
    po::options_description desc("nn_convert idx", 100);
    desc.add_options()
        ("help,h", "show this help")
        ("images", po::value(&images), "IDX file of images (unsigned bytes, e.g. train-images-idx3-ubyte)")
        ("labels", po::value(&labels), "IDX file of labels (unsigned bytes)")
        ("out", po::value(&out), "HDF5 file to write (X and y as uint8)");
    if (!parse(argc, argv, desc)) return 0;
    if (images.empty() || labels.empty() || out.empty()) throw Error("--images, --labels and --out are required");
    remove_leftovers(out);
    print(convert_idx(images, labels, out), out);
    return 0;
  }
  throw Error(mode.empty() ? "give a format: csv or idx" : "unknown format '" + printable(mode) + "' (expected csv or idx)");
}

}  // namespace

int main(int argc, char** argv) {
  remove_temporary_file_on_signals();
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "nn_convert: error: %s\n", printable(e.what(), 1000).c_str());
    if (argc < 2) std::fprintf(stderr, "%s", kUsage);
    return kUsageExitCode;
  }
}
