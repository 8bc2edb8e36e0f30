// nn_allreduce_bench: the latency and bandwidth of summing a float buffer over
// the ranks (like nccl-tests' all_reduce_perf and OSU's osu_allreduce), for
// Open MPI's allreduce called directly and for each of nn_dist's gradient sums
// driven as the trainer drives them, so the times are those of the trainer's
// sum itself (without the wait for slower ranks' backprop, or the overlap).
// The measurement is bench/allreduce; this program reads the flags and prints
// the table (and the CSV).
#include <boost/program_options.hpp>

#include <cctype>
#include <cstdio>
#include <string>
#include <vector>

#include "nn_dist/bench/allreduce.hpp"
#include "nn_dist/cli/config.hpp"
#include "nn_dist/cli/mpi_program.hpp"
#include "nn_dist/common/error.hpp"
#include "nn_dist/common/text.hpp"
#include "nn_dist/io/files.hpp"
#include "nn_dist/parallel/comm.hpp"

namespace po = boost::program_options;
using namespace nn_dist;

namespace {

constexpr std::size_t kMaxBytes = std::size_t{64} << 30;  // per buffer: far beyond any gradient

struct Options {
  std::string min_bytes = "4", max_bytes = "256M", paths = "all", csv, overlap;
  long factor = 2;
  double bucket_mb = 0, timeout = 0;
  MeasureOptions measure;
  // From the above:
  BucketSettings buckets;
  std::vector<std::size_t> sizes;  // bytes, ascending
  std::vector<const Path*> chosen;
};

// A byte count: digits with an optional K, M or G (KiB, MiB, GiB).
std::size_t parse_bytes(const std::string& text, const std::string& flag) {
  std::size_t digits = 0;
  while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits]))) ++digits;
  const std::string unit = text.substr(digits);
  const int shift = unit.empty() ? 0 : unit == "K" || unit == "k" ? 10 : unit == "M" ? 20 : unit == "G" ? 30 : -1;
  if (digits == 0 || digits > 12 || shift < 0) {
    throw Error(flag + ": expected a byte count like 4096, 64K, 256M or 1G, got '" + printable(text) + "'");
  }
  const std::size_t count = std::stoull(text.substr(0, digits));
  if (count > (kMaxBytes >> shift)) throw Error(flag + ": at most 64G, got " + printable(text));
  return count << shift;
}

// The options, their defaults from *o (the buckets and overlap, and the timeout, are the trainer's).
po::options_description option_table(Options* o) {
  const Config trainer;
  o->bucket_mb = trainer.bucket_mb;
  o->overlap = trainer.overlap ? "on" : "off";
  o->timeout = trainer.collective_timeout;
  MeasureOptions& m = o->measure;
  po::options_description table = nn_dist::option_table();
  table.add_options()
      ("min-bytes", po::value(&o->min_bytes)->default_value(o->min_bytes),
       "smallest message (bytes, or with K, M, G: KiB, MiB, GiB); a multiple of 4 (float32 values)")
      ("max-bytes", po::value(&o->max_bytes)->default_value(o->max_bytes), "largest message")
      ("factor", po::value(&o->factor)->default_value(o->factor), "each size is the previous one times this")
      ("paths", po::value(&o->paths)->default_value(o->paths),
       "all, or a comma-separated list of mpi, impi, nn-shared, nn-hierarchical, nn-mpi, "
       "p2p-exchange, p2p-relay (2 ranks: the buffer both ways at once, or one way and back) "
       "(paths that do not apply to the ranks' layout are skipped with a note)")
      ("warmup-iters", po::value(&m.warmup_iters)->default_value(m.warmup_iters),
       "untimed sums per path and size (their times set the iteration count)")
      ("min-seconds", po::value(&m.min_seconds)->default_value(m.min_seconds, "0.2"),
       "timed iterations per path and size: enough to last about this long (refill and barrier included)")
      ("min-iters", po::value(&m.min_iters)->default_value(m.min_iters), "at least this many timed iterations")
      ("max-iters", po::value(&m.max_iters)->default_value(m.max_iters), "at most this many timed iterations")
      ("csv", po::value(&o->csv), "also write the results to this CSV file (rank 0)")
      ("bucket-mb", po::value(&o->bucket_mb)->default_value(o->bucket_mb),
       "nn-hierarchical: bucket size in MB, as nn_dist's")
      ("overlap", po::value(&o->overlap)->default_value(o->overlap),
       "nn-hierarchical: on, buckets started as backprop reports its pieces; off, one bucket after backprop "
       "(as nn_dist's)");
  return table;
}

// The values, and what follows from them: the bucket settings, the paths, the sizes.
void check_options(Options* o) {
  const MeasureOptions& m = o->measure;
  const std::size_t min_bytes = parse_bytes(o->min_bytes, "--min-bytes");
  const std::size_t max_bytes = parse_bytes(o->max_bytes, "--max-bytes");
  if (min_bytes < 4 || min_bytes % 4 != 0) {
    throw Error("--min-bytes: must be a positive multiple of 4 (whole float32 values), got " + o->min_bytes);
  }
  if (max_bytes < min_bytes) throw Error("--max-bytes: must be at least --min-bytes (" + o->min_bytes + ")");
  if (!(o->factor >= 2 && o->factor <= 1024)) throw Error("--factor: must be 2 to 1024");
  if (!(m.warmup_iters >= 1 && m.warmup_iters <= 1000000)) throw Error("--warmup-iters: must be 1 to 1000000");
  if (!(m.min_iters >= 1 && m.min_iters <= 10000000)) throw Error("--min-iters: must be 1 to 10000000");
  if (!(m.max_iters >= m.min_iters && m.max_iters <= 10000000)) {
    throw Error("--max-iters: must be --min-iters (" + std::to_string(m.min_iters) + ") to 10000000");
  }
  if (!(m.min_seconds >= 0 && m.min_seconds <= 1e5)) throw Error("--min-seconds: must be 0 to 100000");
  if (!(o->bucket_mb > 0 && o->bucket_mb <= 1e6)) throw Error("--bucket-mb: must be in (0, 1000000]");
  o->buckets.bucket_bytes = static_cast<std::size_t>(o->bucket_mb * 1024 * 1024);
  o->buckets.overlap = parse_on_off(o->overlap, "--overlap");
  o->chosen = parse_paths(o->paths);
  for (std::size_t bytes = min_bytes; bytes <= max_bytes; bytes *= static_cast<std::size_t>(o->factor)) {
    o->sizes.push_back(bytes);
  }
}

// Returns false for --help (printed by rank 0).
bool parse(int argc, char** argv, Options* o, std::string* help) {
  const ProgramHelp program{"nn_allreduce_bench",
                            "latency and bandwidth of Open MPI's allreduce and of nn_dist's gradient sums, size by "
                            "size",
                            {"mpirun -np N nn_allreduce_bench [options]"}};
  po::options_description table = option_table(o);
  if (!parse_mpi_tool_options(argc, argv, program, &table, &o->timeout, help)) return false;
  check_options(o);
  return true;
}

// Rank 0's CSV file, with its header line ("" for none).
void open_csv(const Communicator& comm, const std::string& path, TextFileWriter* csv) {
  comm.agreed([&] {
    if (!comm.root() || path.empty()) return;
    csv->open(require_output_file(path, "--csv"), false, "--csv");
    csv->write("path,ranks,nodes,bytes,iters,time_us_median,time_us_min,algbw_GBps,busbw_GBps\n");
  });
}

void print_header(const Options& o, int ranks, long nodes) {
  std::printf("# nn_allreduce_bench: %d rank(s) on %ld node(s); float32 sums of %zu to %zu bytes\n", ranks, nodes,
              o.sizes.front(), o.sizes.back());
  std::printf("# time_us: median over iterations of the slowest rank's time; min_us: the fastest iteration's\n"
              "# algbw = bytes / time_us; busbw = algbw * 2(p-1)/p (nccl-tests); GB/s = 1e9 bytes/s\n");
  std::printf("# nn-hierarchical: buckets of %g MB, overlap %s (pieces of %zu floats reported last first, as "
              "backprop)\n",
              o.bucket_mb, o.overlap.c_str(), kGradientPieceElements);
  std::printf("%-16s %12s %8s %12s %12s %11s %11s\n", "path", "bytes", "iters", "time_us", "min_us", "algbw_GB/s",
              "busbw_GB/s");
  std::fflush(stdout);
}

// Rank 0: one row of the table, and of the CSV.
void print_row(const Communicator& comm, const Path& info, std::size_t bytes, const Timing& t, long nodes,
               TextFileWriter* csv) {
  const int ranks = comm.size();
  const double algbw = static_cast<double>(bytes) / t.median_us * 1e-3;  // bytes/us = MB/s
  const double bus_factor = 2.0 * (ranks - 1) / ranks;
  const double busbw = algbw * bus_factor;
  comm.agreed([&] {
    if (!comm.root()) return;
    std::printf("%-16s %12zu %8ld %12.2f %12.2f %11.4f %11.4f\n", info.name, bytes, t.iters, t.median_us, t.min_us,
                algbw, busbw);
    std::fflush(stdout);
    if (csv->is_open()) {
      csv->write(std::string(info.name) + "," + std::to_string(ranks) + "," + std::to_string(nodes) + "," +
                 std::to_string(bytes) + "," + std::to_string(t.iters) + "," + fmt("%.6g", t.median_us) + "," +
                 fmt("%.6g", t.min_us) + "," + fmt("%.6g", algbw) + "," + fmt("%.6g", busbw) + "\n");
    }
  });
}

int run(const Communicator& comm, const Options& o) {
  TextFileWriter csv;
  open_csv(comm, o.csv, &csv);
  AllreduceBench bench(comm, o.sizes.back(), o.buckets, o.measure);
  if (comm.root()) print_header(o, comm.size(), bench.nodes());
  std::vector<bool> skipped(o.chosen.size(), false);  // a path that does not apply is noted once
  for (const std::size_t bytes : o.sizes) {
    for (std::size_t k = 0; k < o.chosen.size(); ++k) {
      if (skipped[k]) continue;
      std::string note;
      const std::optional<Timing> t = bench.measure(*o.chosen[k], bytes, &note);
      if (t) {
        print_row(comm, *o.chosen[k], bytes, *t, bench.nodes(), &csv);
        continue;
      }
      skipped[k] = true;
      if (comm.root()) {
        std::printf("# note: %s\n", note.c_str());
        std::fflush(stdout);
      }
    }
  }
  comm.agreed([&] { csv.close(); });
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return mpi_tool_main<Options>("nn_allreduce_bench", &argc, &argv, parse, run); }
