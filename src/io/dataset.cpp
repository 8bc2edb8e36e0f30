// HDF5 shard reader: shape and type checks, a row hyperslab per rank, and
// conversion of X to float32 by the HDF5 library itself.
#include "nn_dist/io/dataset.hpp"

#include <emmintrin.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "io/h5util.hpp"
#include "io/names_h5.hpp"
#include "io/read_ring.hpp"
#include "nn_dist/io/pieces.hpp"
#include "nn_dist/common/cpu.hpp"
#include "nn_dist/common/error.hpp"
#include "nn_dist/common/text.hpp"

namespace nn_dist {

namespace {

std::string number(double v) { return fmt("%g", v); }

bool is_numeric(hid_t dataset) {
  h5::Handle type(H5Dget_type(dataset), H5Tclose);
  const H5T_class_t cls = H5Tget_class(type.get());
  return cls == H5T_INTEGER || cls == H5T_FLOAT;
}

// Reads rows [offset, offset + count) of a 1-D or 2-D dataset as mem_type.
void read_rows(hid_t dataset, hid_t mem_type, long offset, long count, long width, void* out,
               const std::string& what, const std::string& name, hid_t transfer = H5P_DEFAULT) {
  const std::vector<hsize_t> shape = h5::dims(dataset);
  h5::Handle file_space(H5Dget_space(dataset), H5Sclose);
  std::vector<hsize_t> start(shape.size(), 0), extent(shape);
  start[0] = static_cast<hsize_t>(offset);
  extent[0] = static_cast<hsize_t>(count);
  H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start.data(), nullptr, extent.data(), nullptr);
  const hsize_t mem_dims[2] = {static_cast<hsize_t>(count), static_cast<hsize_t>(width)};
  h5::Handle mem_space(H5Screate_simple(2, mem_dims, nullptr), H5Sclose);
  if (H5Dread(dataset, mem_type, mem_space.get(), file_space.get(), transfer, out) < 0) {
    throw Error(what + ": cannot read rows " + std::to_string(offset) + ".." + std::to_string(offset + count - 1) +
                " of '" + name + "' (truncated or damaged file?)");
  }
}

// Rows [offset, offset + count) of the concatenation, file by file: calls
// read(i, part, first, n, at) for each file i they touch, with n rows from
// the file's row `first`, landing at row `at` of the request. A single file
// is its own part 0.
template <typename Read>
void for_each_part(const DatasetInfo& info, long offset, long count, Read&& read) {
  if (info.parts.empty()) {
    read(std::size_t{0}, info, offset, count, 0L);
    return;
  }
  long start = 0;  // the first row of this part in the concatenation
  for (std::size_t i = 0; i < info.parts.size(); ++i) {
    const DatasetInfo& part = info.parts[i];
    const long lo = std::max(offset, start), hi = std::min(offset + count, start + part.samples);
    if (lo < hi) read(i, part, lo - start, hi - lo, lo - offset);
    start += part.samples;
  }
}

}  // namespace

DatasetInfo inspect_dataset(const std::string& path, const std::string& what, const std::string& x_name,
                            const std::string& y_name) {
  DatasetInfo info;
  info.path = path;
  info.what = what;
  info.x_name = x_name;
  info.y_name = y_name;
  h5::Handle file = h5::open_file(path, what);
  h5::Handle x = h5::open_dataset(file.get(), x_name, what);
  h5::Handle y = h5::open_dataset(file.get(), y_name, what);
  const std::vector<hsize_t> xd = h5::dims(x.get()), yd = h5::dims(y.get());
  if (xd.size() != 2) {
    throw Error(what + ": '" + x_name + "' must be 2-D (samples x features), it has " + std::to_string(xd.size()) +
                " dimension(s)");
  }
  if (!is_numeric(x.get())) throw Error(what + ": '" + x_name + "' is not numeric (expected float or integer)");
  if (!is_numeric(y.get())) throw Error(what + ": '" + y_name + "' is not numeric (expected float or integer)");
  if (yd.empty() || yd.size() > 2) {
    throw Error(what + ": '" + y_name + "' must be 1-D (labels) or 2-D (samples x targets)");
  }
  info.samples = static_cast<long>(xd[0]);
  info.features = static_cast<long>(xd[1]);
  if (info.samples == 0 || info.features == 0) {
    throw Error(what + ": '" + x_name + "' is empty (" + std::to_string(xd[0]) + " x " + std::to_string(xd[1]) + ")");
  }
  if (static_cast<long>(yd[0]) != info.samples) {
    throw Error(what + ": '" + x_name + "' has " + std::to_string(info.samples) + " samples but '" + y_name +
                "' has " + std::to_string(yd[0]));
  }
  info.target_width = yd.size() == 2 ? static_cast<long>(yd[1]) : 1;
  if (info.target_width == 0) throw Error(what + ": '" + y_name + "' has no columns");
  h5::Handle ytype(H5Dget_type(y.get()), H5Tclose);
  info.integer_targets = H5Tget_class(ytype.get()) == H5T_INTEGER;
  h5::Handle xtype(H5Dget_type(x.get()), H5Tclose);
  const std::size_t bytes = H5Tget_size(xtype.get());
  if (H5Tget_class(xtype.get()) == H5T_INTEGER && H5Tget_sign(xtype.get()) == H5T_SGN_NONE && bytes <= 2) {
    info.x_width = static_cast<int>(bytes);
  }
  info.names = read_names(file.get(), what, "");
  require_names_fit(info.names, info.features, 0, what, "");
  return info;
}

namespace {

// Minibatches gather columns from all over the shard. On 4 KB pages nearly
// every column costs a TLB miss and the hardware prefetcher stops at each
// page boundary; asking for 2 MB pages before the shard is first written
// makes the gather cheaper. Only a hint: where the kernel says no, nothing changes.
void advise_huge_pages(void* data, std::size_t bytes) {
  constexpr std::uintptr_t kHuge = 2 << 20;
  const std::uintptr_t begin = (reinterpret_cast<std::uintptr_t>(data) + kHuge - 1) / kHuge * kHuge;
  const std::uintptr_t end = (reinterpret_cast<std::uintptr_t>(data) + bytes) / kHuge * kHuge;
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
}

}  // namespace

double shard_bytes(const DatasetInfo& info, long count) {
  const double x_bytes = info.x_width > 0 ? info.x_width : 4.0;
  return static_cast<double>(count) *
         (x_bytes * static_cast<double>(info.features) + 12.0 * static_cast<double>(info.target_width) + 4.0);
}

namespace {

// Rows [offset, offset + count) of one file into x (features, count) and y
// (target_width, count), column-major.
// x_out: float32, or (compact) values of info.x_width bytes.
void read_file_rows(const DatasetInfo& info, long offset, long count, void* x_out, double* y_out, bool compact) {
  std::lock_guard<std::mutex> lock(hdf5_mutex());
  h5::Handle file = h5::open_file(info.path, info.what);
  h5::Handle x = h5::open_dataset(file.get(), info.x_name, info.what);
  h5::Handle y = h5::open_dataset(file.get(), info.y_name, info.what);
  const hid_t x_type = !compact ? H5T_NATIVE_FLOAT : info.x_width == 1 ? H5T_NATIVE_UINT8 : H5T_NATIVE_UINT16;
  read_rows(x.get(), x_type, offset, count, info.features, x_out, info.what, info.x_name);
  read_rows(y.get(), H5T_NATIVE_DOUBLE, offset, count, info.target_width, y_out, info.what, info.y_name);
  const float* xf = static_cast<const float*>(x_out);
  for (long j = 0; j < count; ++j) {
    for (long i = 0; i < info.features && !compact; ++i) {  // integers are always finite
      if (!std::isfinite(xf[j * info.features + i])) {
        throw Error(info.what + ": '" + info.x_name + "' has a NaN or Inf value at sample " +
                    std::to_string(offset + j) + ", feature " + std::to_string(i));
      }
    }
    for (long i = 0; i < info.target_width; ++i) {
      if (!std::isfinite(y_out[j * info.target_width + i])) {
        throw Error(info.what + ": '" + info.y_name + "' has a NaN or Inf value at sample " + std::to_string(offset + j));
      }
    }
  }
}

}  // namespace

namespace {

// Bytes [at, at + bytes) of the file `fd` into out; one that fails or ends
// early (the file shrank while being read) is an Error naming `what` and the dataset.
void read_exactly(int fd, std::size_t at, std::size_t bytes, unsigned char* out, const std::string& what,
                  const std::string& dataset) {
  while (bytes > 0) {
    const ssize_t got = pread(fd, out, bytes, static_cast<off_t>(at));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      throw Error(what + ": reading " + dataset + " at byte " + std::to_string(at) + " failed: " +
                  (got < 0 ? std::string(std::strerror(errno))
                           : std::string("the file ends there (it shrank or was overwritten while being read)")));
    }
    out += got;
    at += static_cast<std::size_t>(got);
    bytes -= static_cast<std::size_t>(got);
  }
}

// n bytes from s to d, the cache lines of d they cover whole with
// non-temporal stores: written to memory without first reading d's lines
// into the cache (a window of rows is far larger than the caches), the ends
// with memcpy. The caller fences (_mm_sfence) before another thread reads d.
void copy_streaming(unsigned char* d, const unsigned char* s, std::size_t n) {
  const std::size_t head = std::min(n, (64 - reinterpret_cast<std::uintptr_t>(d) % 64) % 64);
  std::memcpy(d, s, head);
  d += head;
  s += head;
  n -= head;
  for (; n >= 64; n -= 64, d += 64, s += 64) {
    for (int k = 0; k < 64; k += 16) {
      _mm_stream_si128(reinterpret_cast<__m128i*>(d + k), _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + k)));
    }
  }
  std::memcpy(d, s, n);
}

// Whole rows placed out of order (copy_rows' `place`) are read with one
// preadv a group of this many rows (Linux's IOV_MAX).
constexpr long kPlacedRows = 1024;

// `rows` rows of row_bytes from byte `at` of the file, row i to out +
// row_bytes * place[i], with preadv (iov: kPlacedRows entries); what a read
// leaves short (or fails) read_exactly reads again, naming the error.
void read_rows_placed(int fd, std::size_t at, std::size_t row_bytes, long rows, unsigned char* out,
                      const std::uint32_t* place, iovec* iov, const std::string& what, const std::string& dataset) {
  for (long first = 0; first < rows; first += kPlacedRows) {
    const long n = std::min(kPlacedRows, rows - first);
    for (long i = 0; i < n; ++i) iov[i] = {out + row_bytes * place[first + i], row_bytes};
    const std::size_t start = at + row_bytes * static_cast<std::size_t>(first);
    ssize_t got = 0;
    do {
      got = preadv(fd, iov, static_cast<int>(n), static_cast<off_t>(start));
    } while (got < 0 && errno == EINTR);
    const std::size_t done = got > 0 ? static_cast<std::size_t>(got) : 0;
    for (auto i = static_cast<long>(done / row_bytes); i < n; ++i) {
      const std::size_t have = i == static_cast<long>(done / row_bytes) ? done % row_bytes : 0;
      read_exactly(fd, start + row_bytes * static_cast<std::size_t>(i) + have, row_bytes - have,
                   static_cast<unsigned char*>(iov[i].iov_base) + have, what, dataset);
    }
  }
}

// copy_rows reads the pieces of all chunk columns for up to this many bytes
// of rows at a time: a streamed block's run of rows in one pread a chunk
// column (--cache-mb 64: 663 rows, 2.1 MB). On a 2-vCPU Zen 5 guest,
// 400000 x 784 float32 in (3125, 13) chunks read alone: 0.90 us a row,
// against 1.48 with 512 KB (8.6 KB a pread, 4x the system calls).
constexpr std::size_t kStagingBytes = 4 << 20;

// HDF5 1.10 finds each chunk's address by walking its chunk index from the
// start (one walk for all, H5Dchunk_iter, is a later version's), so indexing
// n chunks takes n^2 / 2 steps: about 0.4 s for h5py's 7808 chunks of 400000 x 784
// float32 (its default B-tree), 3 s for the same under libver="latest" (a
// fixed array). Files with more chunks are read through HDF5.
constexpr hsize_t kMaxChunks = 8192;

// Where a dataset's values are in its file, read as rows: each chunk's first
// byte, as a grid of chunks (chunk row, chunk column) row-major; contiguous
// storage is one chunk of every row.
struct ChunkGrid {
  std::vector<std::size_t> chunks;
  long chunk_rows = 0;     // rows a chunk
  std::size_t stride = 0;  // bytes a chunk row (the last column's chunks pass the last column)
  long grid_width = 0;     // chunks across a row
};

// y's stored types that read_targets widens to double itself (as HDF5's
// conversion does: a cast), by index; -1 for any other.
int target_kind(hid_t type) {
  const hid_t kinds[] = {H5T_NATIVE_INT8,  H5T_NATIVE_UINT8,  H5T_NATIVE_INT16, H5T_NATIVE_UINT16, H5T_NATIVE_INT32,
                         H5T_NATIVE_UINT32, H5T_NATIVE_INT64, H5T_NATIVE_UINT64, H5T_NATIVE_FLOAT,  H5T_NATIVE_DOUBLE};
  for (int k = 0; k < static_cast<int>(std::size(kinds)); ++k) {
    if (H5Tequal(type, kinds[k]) > 0) return k;
  }
  return -1;
}

// Whether the open file `fd` is at least `end` bytes long.
bool holds(int fd, std::size_t end) {
  struct stat st {};
  return fstat(fd, &st) == 0 && static_cast<std::size_t>(st.st_size) >= end;
}

std::size_t kind_bytes(int kind) {
  constexpr std::size_t kBytes[] = {1, 1, 2, 2, 4, 4, 8, 8, 4, 8};
  return kBytes[kind];
}

template <typename T>
void widen_as(const unsigned char* in, std::size_t n, double* out) {
  for (std::size_t i = 0; i < n; ++i) {
    T v;
    std::memcpy(&v, in + i * sizeof(T), sizeof v);
    out[i] = static_cast<double>(v);
  }
}

// n values of y's stored kind (target_kind) to double.
void widen(int kind, const unsigned char* in, std::size_t n, double* out) {
  switch (kind) {
    case 0: widen_as<std::int8_t>(in, n, out); break;
    case 1: widen_as<std::uint8_t>(in, n, out); break;
    case 2: widen_as<std::int16_t>(in, n, out); break;
    case 3: widen_as<std::uint16_t>(in, n, out); break;
    case 4: widen_as<std::int32_t>(in, n, out); break;
    case 5: widen_as<std::uint32_t>(in, n, out); break;
    case 6: widen_as<std::int64_t>(in, n, out); break;
    case 7: widen_as<std::uint64_t>(in, n, out); break;
    case 8: widen_as<float>(in, n, out); break;
    default: widen_as<double>(in, n, out); break;
  }
}

}  // namespace

struct RowReader::Impl {
  struct Open {  // one per file, in the order for_each_part numbers them
    h5::Handle file, x, y;
    int fd = -1;          // the file, open when X is read directly (copy_rows' preads)
    std::string what;     // how errors name the file
    ChunkGrid xs, ys;     // where X is; where y is, when read directly too
    // Chunked X whose rows are whole 64-byte lines, on a CPU with AVX-512:
    // copy_rows assembles rows a line at a time (assemble_lines_avx512) into
    // 64-byte aligned rows; empty otherwise.
    LinePlan lines;
  };
  const DatasetInfo& info;
  std::vector<Open> parts;
  std::size_t row_bytes = 0;  // of X as stored and in memory
  bool direct = false;
  long chunks_a_row = 0;
  std::vector<unsigned char> staging, tile_rows;  // copy_rows': pieces as read, rows as assembled
  // copy_rows' reads of a chunked X, chunks_a_row at a time in one system call
  // (null where X is contiguous or io_uring is unavailable).
  std::unique_ptr<ReadRing> ring;
  std::vector<ReadRequest> requests;
  std::vector<std::size_t> done;
  std::vector<iovec> iov;  // copy_rows' whole rows placed out of order (read_rows_placed)
  // y read with pread too (read_targets: no HDF5 call, nothing allocated), when
  // X is and every file stores y unfiltered, as one kind (target_kind), each
  // chunk holding whole rows; y_raw holds the values as stored on their way.
  int y_kind = -1;
  std::vector<unsigned char> y_raw;
  static constexpr std::size_t kRawBytes = 64 << 10;
  // Reads with a type-conversion buffer of their own, of HDF5's default size:
  // by default HDF5 allocates and clears one for each read that converts (y
  // to double), a fifth of what the streaming reader spent besides X. Left
  // uninitialised: a read touches only the pages it converts through.
  static constexpr std::size_t kConvertBytes = 1 << 20;
  std::unique_ptr<unsigned char[]> convert_buffer{new unsigned char[kConvertBytes]};
  h5::Handle transfer;

  explicit Impl(const DatasetInfo& i) : info(i) {
    std::lock_guard<std::mutex> lock(hdf5_mutex());
    transfer = h5::Handle(H5Pcreate(H5P_DATASET_XFER), H5Pclose);
    if (!transfer.valid() || H5Pset_buffer(transfer.get(), kConvertBytes, convert_buffer.get(), nullptr) < 0) {
      throw Error(info.what + ": HDF5 cannot create a data transfer property list");
    }
    const auto open = [&](const DatasetInfo& part) {
      h5::Handle file = h5::open_file(part.path, part.what);
      h5::Handle x = h5::open_dataset(file.get(), part.x_name, part.what);
      h5::Handle y = h5::open_dataset(file.get(), part.y_name, part.what);
      parts.emplace_back();
      parts.back().file = std::move(file);
      parts.back().x = std::move(x);
      parts.back().y = std::move(y);
      parts.back().what = part.what;
    };
    if (info.parts.empty()) {
      open(info);
    } else {
      for (const DatasetInfo& part : info.parts) open(part);
    }
    row_bytes = static_cast<std::size_t>(info.features) * (info.x_width > 0 ? info.x_width : sizeof(float));
    direct = true;
    for (std::size_t k = 0; k < parts.size() && direct; ++k) {
      direct = locate(parts[k], part_info(k));
      chunks_a_row = std::max(chunks_a_row, parts[k].xs.grid_width);
    }
    if (!direct) {
      close_files();
      chunks_a_row = 0;
    }
    requests.resize(static_cast<std::size_t>(chunks_a_row));
    done.resize(static_cast<std::size_t>(chunks_a_row));
    if (direct) iov.resize(kPlacedRows);
    if (direct && row_bytes % 64 == 0 && cpu_has_avx512()) {
      for (Open& open : parts) {
        if (open.xs.grid_width > 1) open.lines = plan_lines(row_bytes, open.xs.stride);
      }
    }
    if (chunks_a_row > 1) {
      ring = std::make_unique<ReadRing>();
      if (!ring->ok()) ring.reset();
    }
    if (direct) locate_targets();
  }
  ~Impl() { close_files(); }

  const DatasetInfo& part_info(std::size_t k) const { return info.parts.empty() ? info : info.parts[k]; }

  // Finds X's bytes in the file and opens it when X is stored unfiltered, in
  // the type it has in memory, contiguously or in chunks (index_chunks); false otherwise.
  bool locate(Open& open, const DatasetInfo& part) {
    h5::Handle type(H5Dget_type(open.x.get()), H5Tclose);
    const hid_t memory = info.x_width == 0 ? H5T_NATIVE_FLOAT : info.x_width == 1 ? H5T_NATIVE_UINT8 : H5T_NATIVE_UINT16;
    if (H5Tequal(type.get(), memory) <= 0) return false;
    std::size_t end = 0;  // the end of the last chunk
    if (!place(open, open.x.get(), part.samples, part.features, row_bytes / static_cast<std::size_t>(part.features),
               &open.xs, &end)) {
      return false;
    }
    const int fd = ::open(part.path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    if (!holds(fd, end)) {
      close(fd);
      return false;
    }
    open.fd = fd;
    return true;
  }

  // y read directly when every file's y allows it (else y_kind stays -1 and HDF5 reads it).
  void locate_targets() {
    int kind = -1;
    for (std::size_t k = 0; k < parts.size(); ++k) {
      Open& open = parts[k];
      h5::Handle type(H5Dget_type(open.y.get()), H5Tclose);
      const int own = target_kind(type.get());
      std::size_t end = 0;
      if (own < 0 || (kind >= 0 && own != kind) ||
          !place(open, open.y.get(), part_info(k).samples, info.target_width, kind_bytes(own), &open.ys, &end) ||
          open.ys.grid_width != 1 || open.ys.stride > kRawBytes || !holds(open.fd, end)) {
        return;
      }
      kind = own;
    }
    y_kind = kind;
    y_raw.resize(kRawBytes);
  }

  // Where a dataset of `samples` rows of `width` values of value_bytes each
  // lies in the file (*grid, and the end of its last byte, *end), when it is
  // stored unfiltered, contiguously or in chunks (index_chunks).
  bool place(const Open& open, hid_t dataset, long samples, long width, std::size_t value_bytes, ChunkGrid* grid,
             std::size_t* end) {
    h5::Handle plist(H5Dget_create_plist(dataset), H5Pclose);
    if (H5Pget_nfilters(plist.get()) != 0 || H5Pget_external_count(plist.get()) != 0) return false;
    const H5D_layout_t layout = H5Pget_layout(plist.get());
    std::vector<haddr_t> at;  // each chunk's first byte in the file
    if (layout == H5D_CONTIGUOUS) {
      at.push_back(H5Dget_offset(dataset));  // from the start of the file, user block included
      if (at[0] == HADDR_UNDEF) return false;
      grid->chunk_rows = std::max(samples, 1L);
      grid->stride = value_bytes * static_cast<std::size_t>(width);
      grid->grid_width = 1;
      *end = static_cast<std::size_t>(at[0]) + grid->stride * static_cast<std::size_t>(samples);
    } else if (layout != H5D_CHUNKED ||
               !index_chunks(open, dataset, plist.get(), samples, width, value_bytes, grid, &at, end)) {
      return false;
    }
    grid->chunks.clear();
    for (const haddr_t a : at) grid->chunks.push_back(static_cast<std::size_t>(a));
    return true;
  }

  // Each chunk's file offset (*at, by chunk row then column) and the end of
  // the last (*end), when every chunk is written whole and unfiltered (an
  // unwritten chunk reads as the fill value: HDF5's business). A dataset of
  // one dimension is one column.
  bool index_chunks(const Open& open, hid_t dataset, hid_t plist, long samples, long width, std::size_t value_bytes,
                    ChunkGrid* grid, std::vector<haddr_t>* at, std::size_t* end) {
    hsize_t chunk[2] = {0, 1};
    const int dims = H5Pget_chunk(plist, 2, chunk);
    if (dims < 1 || dims > 2 || (dims == 1 && width != 1) || chunk[0] == 0 || chunk[1] == 0) return false;
    // HDF5 1.10-1.14.3 give chunk addresses without the user block, later
    // versions with it (HDF5 pull request 4236): with one, HDF5 reads.
    h5::Handle fcpl(H5Fget_create_plist(open.file.get()), H5Pclose);
    hsize_t userblock = 1;
    if (H5Pget_userblock(fcpl.get(), &userblock) < 0 || userblock != 0) return false;
    const hsize_t n = static_cast<hsize_t>(samples), d = static_cast<hsize_t>(width);
    const hsize_t grid_rows = (n + chunk[0] - 1) / chunk[0], grid_width = (d + chunk[1] - 1) / chunk[1];
    const hsize_t count = grid_rows * grid_width;
    if (count > kMaxChunks) return false;
    h5::Handle space(H5Dget_space(dataset), H5Sclose);  // not H5S_ALL: see H5Dget_num_chunks' notes
    hsize_t stored = 0;
    if (H5Dget_num_chunks(dataset, space.get(), &stored) < 0 || stored != count) return false;
    const hsize_t chunk_bytes = chunk[0] * chunk[1] * value_bytes;
    at->assign(count, HADDR_UNDEF);
    for (hsize_t i = 0; i < count; ++i) {  // the stored chunks, each put in its place in the grid
      hsize_t first[2] = {0, 0};
      unsigned filters = 0;
      haddr_t addr = HADDR_UNDEF;
      hsize_t size = 0;
      if (H5Dget_chunk_info(dataset, space.get(), i, first, &filters, &addr, &size) < 0 || addr == HADDR_UNDEF ||
          size != chunk_bytes || filters != 0 || first[0] % chunk[0] != 0 || first[1] % chunk[1] != 0 ||
          first[0] >= n || first[1] >= d) {
        return false;
      }
      haddr_t& slot = (*at)[first[0] / chunk[0] * grid_width + first[1] / chunk[1]];
      if (slot != HADDR_UNDEF) return false;  // the same chunk twice: then another is missing
      slot = addr;
      *end = std::max(*end, static_cast<std::size_t>(addr + size));
    }
    grid->chunk_rows = static_cast<long>(chunk[0]);
    grid->stride = static_cast<std::size_t>(chunk[1]) * value_bytes;
    grid->grid_width = static_cast<long>(grid_width);
    return true;
  }
  // The run of `bytes` at `from` in each of a chunk row's chunks (chunk[c]
  // + from), into out + c * bytes: through the ring where there is one, then
  // every read it left short (or all of them) with pread, which names errors.
  void read_pieces(const Open& open, const std::size_t* chunk, std::size_t from, std::size_t bytes,
                   unsigned char* out) {
    const auto n = static_cast<std::size_t>(open.xs.grid_width);
    if (ring != nullptr && ring->ok()) {
      for (std::size_t c = 0; c < n; ++c) requests[c] = {open.fd, chunk[c] + from, bytes, out + bytes * c};
      ring->read(requests.data(), n, done.data());  // sets every done[c]
    } else {
      std::fill(done.begin(), done.begin() + static_cast<long>(n), std::size_t{0});
    }
    for (std::size_t c = 0; c < n; ++c) {
      if (done[c] < bytes) {
        read_exactly(open.fd, chunk[c] + from + done[c], bytes - done[c], out + bytes * c + done[c], open.what,
                     info.x_name);
      }
    }
  }
  // `rows` whole rows of X from byte `at` of the file into x's rows from
  // out_row on: in order, or row i to place[out_row + i] (copy_rows).
  void read_whole_rows(const Open& open, std::size_t at, long rows, unsigned char* x, long out_row,
                       const std::uint32_t* place) {
    if (place != nullptr) {
      read_rows_placed(open.fd, at, row_bytes, rows, x, place + out_row, iov.data(), open.what, info.x_name);
    } else {
      read_exactly(open.fd, at, row_bytes * static_cast<std::size_t>(rows),
                   x + row_bytes * static_cast<std::size_t>(out_row), open.what, info.x_name);
    }
  }
  // Rows [offset, offset + count) of y as double, read directly (y_kind >= 0).
  void read_targets(long offset, long count, double* y) {
    const auto width = static_cast<std::size_t>(info.target_width);
    for_each_run(offset, count, &Open::ys, [&](const Open& open, const std::size_t* chunk, std::size_t from,
                                               long rows, long out_row) {
      const long most = static_cast<long>(y_raw.size() / open.ys.stride);
      for (long first = 0; first < rows; first += most) {
        const long n = std::min(most, rows - first);
        read_exactly(open.fd, chunk[0] + from + open.ys.stride * static_cast<std::size_t>(first),
                     open.ys.stride * static_cast<std::size_t>(n), y_raw.data(), open.what, info.y_name);
        widen(y_kind, y_raw.data(), width * static_cast<std::size_t>(n),
              y + width * static_cast<std::size_t>(out_row + first));
      }
    });
  }
  void close_files() {
    for (Open& open : parts) {
      if (open.fd >= 0) close(open.fd);
      open.fd = -1;
      open.xs.chunks.clear();
      open.ys.chunks.clear();
    }
    y_kind = -1;
  }

  // Calls f(open, chunk, from, rows, out) for each run that rows [offset,
  // offset + count) of the concatenation take in one file and one chunk row
  // of its grid (Open::xs for X, Open::ys for y): chunk[c] + from is the run's
  // first byte (in the file) in chunk column c (stride bytes a row, `rows`
  // rows), out its first row among the `count`. One run a file when the
  // dataset is contiguous.
  template <typename F>
  void for_each_run(long offset, long count, ChunkGrid Open::*which, F&& f) const {
    for_each_part(info, offset, count, [&](std::size_t i, const DatasetInfo&, long first, long n, long at) {
      const Open& open = parts[i];
      const ChunkGrid& g = open.*which;
      for (long row = first; row < first + n;) {
        const long chunk_row = row / g.chunk_rows, in_chunk = row - chunk_row * g.chunk_rows;
        const long rows = std::min(first + n - row, g.chunk_rows - in_chunk);
        f(open, g.chunks.data() + chunk_row * g.grid_width, g.stride * static_cast<std::size_t>(in_chunk), rows,
          at + row - first);
        row += rows;
      }
    });
  }
};

RowReader::RowReader(const DatasetInfo& info) : impl_(std::make_unique<Impl>(info)) {}
RowReader::~RowReader() {
  std::lock_guard<std::mutex> lock(hdf5_mutex());
  impl_.reset();
}

bool RowReader::direct() const { return impl_->direct; }
bool RowReader::targets_direct() const { return impl_->y_kind >= 0; }
bool RowReader::batched() const { return impl_->ring != nullptr && impl_->ring->ok(); }
void RowReader::read_without_ring() { impl_->ring.reset(); }
bool RowReader::by_lines() const {
  const auto& parts = impl_->parts;
  return std::any_of(parts.begin(), parts.end(), [](const Impl::Open& o) { return !o.lines.parts.empty(); });
}
long RowReader::chunks_a_row() const { return impl_->chunks_a_row; }

void RowReader::copy_rows(long offset, long count, void* x, const std::uint32_t* place) const {
  const std::size_t row_bytes = impl_->row_bytes;
  unsigned char* const out = static_cast<unsigned char*>(x);
  // The pieces of every chunk column for up to kStagingBytes of rows are read
  // (in one io_uring call, or with a pread each), then rows are assembled, a
  // 64-byte line at a time where rows are whole lines (AVX-512: 2 ranks,
  // h5py's chunks of 784 float32, 11 rounds side by side, 0.99-1.11x, median
  // 1.03x the samples/s of tiles), else a tile at a time in L1, and streamed
  // out. (1 rank: 1.3 us a row against 1.6 with pieces copied from a mapping.)
  const long tile = std::max<long>(1, static_cast<long>(16384 / std::max<std::size_t>(row_bytes, 1)));
  auto& staging = impl_->staging;
  auto& assembled = impl_->tile_rows;
  assembled.resize(static_cast<std::size_t>(tile) * row_bytes);
  // Rows [first, first + m) of the `count`, assembled, streamed to where they go.
  const auto put = [&](long first, long m, const unsigned char* rows) {
    if (place == nullptr) {
      copy_streaming(out + row_bytes * static_cast<std::size_t>(first), rows, row_bytes * static_cast<std::size_t>(m));
      return;
    }
    for (long k = 0; k < m; ++k) {
      copy_streaming(out + row_bytes * place[first + k], rows + row_bytes * static_cast<std::size_t>(k), row_bytes);
    }
  };
  const auto copy_run = [&](const Impl::Open& open, const std::size_t* chunk, std::size_t from, long rows,
                            long out_row) {
    if (open.xs.grid_width == 1 && open.xs.stride == row_bytes) {  // whole rows: read straight into x
      impl_->read_whole_rows(open, chunk[0] + from, rows, out, out_row, place);
      return;
    }
    const std::size_t width = open.xs.stride * static_cast<std::size_t>(open.xs.grid_width);  // a row's pieces
    const long sub = std::max<long>(1, static_cast<long>(kStagingBytes / width));
    staging.resize(std::max(staging.size(), width * static_cast<std::size_t>(std::min(sub, rows))));
    for (long first = 0; first < rows; first += sub) {
      const long n = std::min(sub, rows - first);
      const std::size_t run = open.xs.stride * static_cast<std::size_t>(n);  // one chunk column's piece
      impl_->read_pieces(open, chunk, from + open.xs.stride * static_cast<std::size_t>(first), run, staging.data());
      if (!open.lines.parts.empty() && reinterpret_cast<std::uintptr_t>(out) % 64 == 0) {
        const long at = out_row + first;
        assemble_lines_avx512(staging.data(), run, open.xs.stride, n, open.lines, row_bytes,
                              place != nullptr ? out : out + row_bytes * static_cast<std::size_t>(at),
                              place != nullptr ? place + at : nullptr);
        continue;
      }
      for (long t = 0; t < n; t += tile) {
        const long m = std::min(tile, n - t);
        for (long c = 0; c < open.xs.grid_width; ++c) {
          const std::size_t column = open.xs.stride * static_cast<std::size_t>(c);  // the chunk's first byte in a row
          // the last chunks pass the last feature
          const std::size_t bytes = std::min(open.xs.stride, row_bytes - column);
          copy_pieces(staging.data() + run * static_cast<std::size_t>(c) + open.xs.stride * t, open.xs.stride,
                      assembled.data() + column, row_bytes, bytes, m);
        }
        put(out_row + first + t, m, assembled.data());
      }
    }
  };
  impl_->for_each_run(offset, count, &Impl::Open::xs, copy_run);
  _mm_sfence();  // the streamed rows in memory before another thread reads them
}

void RowReader::read_targets(long offset, long count, double* y) {
  if (impl_->y_kind >= 0) {
    impl_->read_targets(offset, count, y);
    return;
  }
  std::lock_guard<std::mutex> lock(hdf5_mutex());
  const DatasetInfo& info = impl_->info;
  for_each_part(info, offset, count, [&](std::size_t i, const DatasetInfo& part, long first, long n, long at) {
    read_rows(impl_->parts[i].y.get(), H5T_NATIVE_DOUBLE, first, n, info.target_width, y + at * info.target_width,
              part.what, info.y_name, impl_->transfer.get());
  });
}

void RowReader::read(long offset, long count, bool compact, void* x_out, double* y) {
  std::lock_guard<std::mutex> lock(hdf5_mutex());
  const DatasetInfo& info = impl_->info;
  compact = compact && info.x_width > 0;
  const std::size_t value_bytes = compact ? static_cast<std::size_t>(info.x_width) : sizeof(float);
  const hid_t x_type = !compact ? H5T_NATIVE_FLOAT : info.x_width == 1 ? H5T_NATIVE_UINT8 : H5T_NATIVE_UINT16;
  unsigned char* x = static_cast<unsigned char*>(x_out);
  for_each_part(info, offset, count, [&](std::size_t i, const DatasetInfo& part, long first, long n, long at) {
    const Impl::Open& open = impl_->parts[i];
    read_rows(open.x.get(), x_type, first, n, info.features,
              x + value_bytes * static_cast<std::size_t>(at * info.features), part.what, info.x_name,
              impl_->transfer.get());
    read_rows(open.y.get(), H5T_NATIVE_DOUBLE, first, n, info.target_width, y + at * info.target_width, part.what,
              info.y_name, impl_->transfer.get());
  });
}

std::mutex& hdf5_mutex() {
  static std::mutex m;
  return m;
}

DatasetInfo inspect_datasets(const std::vector<std::string>& paths, const std::string& flag, const std::string& x_name,
                             const std::string& y_name) {
  if (paths.size() == 1) return inspect_dataset(paths[0], flag + " " + paths[0], x_name, y_name);
  DatasetInfo all;
  long named_features = -1, named_labels = -1;  // the first parts that name them
  for (const std::string& path : paths) {
    DatasetInfo part = inspect_dataset(path, flag + " " + path, x_name, y_name);
    if (!all.parts.empty()) {
      const DatasetInfo& first = all.parts.front();
      if (part.features != first.features) {
        throw Error(part.what + ": has " + std::to_string(part.features) + " features, but " + first.what + " has " +
                    std::to_string(first.features) + " (files of one dataset must match)");
      }
      if (part.integer_targets != first.integer_targets || part.target_width != first.target_width) {
        const auto kind = [](const DatasetInfo& d) {
          return d.integer_targets ? std::string("integer labels")
                                   : std::to_string(d.target_width) + " float target column(s)";
        };
        throw Error(part.what + ": '" + y_name + "' holds " + kind(part) + ", but " + first.what + " holds " +
                    kind(first) + " (files of one dataset must match)");
      }
    }
    // Named parts all agree when each agrees with the first that named its
    // features and with the first that named its classes.
    for (const long k : {named_features, named_labels}) {
      if (k >= 0) require_same_names(part.names, part.what, all.parts[k].names, all.parts[k].what);
    }
    const long k = static_cast<long>(all.parts.size());
    if (named_features < 0 && !part.names.features.empty()) named_features = k;
    if (named_labels < 0 && !part.names.labels.empty()) named_labels = k;
    all.samples += part.samples;
    all.parts.push_back(std::move(part));
  }
  const DatasetInfo& first = all.parts.front();
  all.path = first.path;
  all.what = flag + " " + first.path + " (and " + std::to_string(paths.size() - 1) + " more file" +
             (paths.size() > 2 ? "s" : "") + ")";
  all.x_name = x_name;
  all.y_name = y_name;
  all.features = first.features;
  all.target_width = first.target_width;
  all.integer_targets = first.integer_targets;
  all.x_width = first.x_width;
  if (named_features >= 0) all.names.features = all.parts[named_features].names.features;
  if (named_labels >= 0) all.names.labels = all.parts[named_labels].names.labels;
  for (const DatasetInfo& part : all.parts) {
    if (part.x_width != all.x_width) all.x_width = 0;  // mixed storage: read all as float32
  }
  return all;
}

Shard read_shard(const DatasetInfo& info, long offset, long count, bool compact) {
  compact = compact && info.x_width > 0;
  Shard shard;
  shard.offset = offset;
  shard.count = count;
  const std::size_t value_bytes = compact ? static_cast<std::size_t>(info.x_width) : sizeof(float);
  unsigned char* x = nullptr;
  if (compact) {
    shard.compact.resize(value_bytes * static_cast<std::size_t>(info.features * count));
    x = shard.compact.data();
  } else {
    shard.x.resize(info.features, count);
    x = reinterpret_cast<unsigned char*>(shard.x.data());
  }
  advise_huge_pages(x, value_bytes * static_cast<std::size_t>(info.features * count));
  shard.y.resize(info.target_width, count);
  read_rows_into(info, offset, count, compact, x, shard.y.data());
  return shard;
}

void read_rows_into(const DatasetInfo& info, long offset, long count, bool compact, void* x_out, double* y) {
  compact = compact && info.x_width > 0;
  const std::size_t value_bytes = compact ? static_cast<std::size_t>(info.x_width) : sizeof(float);
  unsigned char* x = static_cast<unsigned char*>(x_out);
  for_each_part(info, offset, count, [&](std::size_t, const DatasetInfo& part, long first, long n, long at) {
    read_file_rows(part, first, n, x + value_bytes * static_cast<std::size_t>(at * info.features),
                   y + at * info.target_width, compact);
  });
}

void shard_range(long n, int p, int r, long* offset, long* count) {
  const long base = n / p, extra = n % p;
  *count = base + (r < extra ? 1 : 0);
  *offset = r * base + std::min<long>(r, extra);
}

void block_shard_range(long n, long block, int p, int r, long* offset, long* count) {
  long first = 0, blocks = 0;
  shard_range((n + block - 1) / block, p, r, &first, &blocks);
  *offset = std::min(n, first * block);
  *count = std::min(n, (first + blocks) * block) - *offset;
}

Targets make_targets(const DatasetInfo& info, const Shard& shard, Loss loss) {
  Targets t;
  const std::string where = info.what + ": '" + info.y_name + "'";
  if (loss == Loss::kSoftmax || loss == Loss::kLogistic) {
    if (info.target_width != 1) {
      throw Error(where + " has " + std::to_string(info.target_width) + " columns; --loss " + loss_name(loss) +
                  " needs one label per sample");
    }
  }
  if (loss == Loss::kSoftmax) {
    for (long j = 0; j < shard.count; ++j) {
      const double v = shard.y(0, j);
      if (v < 0 || v != std::floor(v) || v > 1e9) {
        throw Error(where + " has label " + number(v) + " at sample " + std::to_string(shard.offset + j) +
                    "; softmax needs integer labels 0..K-1");
      }
      const std::size_t named = info.names.labels.size();
      if (named > 0 && v >= static_cast<double>(named)) {
        throw Error(where + " has label " + number(v) + " at sample " + std::to_string(shard.offset + j) +
                    ", but 'label_names' names " + std::to_string(named) + " classes (0.." +
                    std::to_string(named - 1) + ")");
      }
    }
    t.labels.resize(shard.count);
    convert_targets(shard.y.data(), shard.count, 1, loss, t.labels.data(), nullptr);
    for (const int32_t label : t.labels) t.max_label = std::max<long>(t.max_label, label);
    return t;
  }
  if (loss == Loss::kLogistic) {
    for (long j = 0; j < shard.count; ++j) {
      const double v = shard.y(0, j);
      if (v != 0 && v != 1) {
        throw Error(where + " has label " + number(v) + " at sample " + std::to_string(shard.offset + j) +
                    "; logistic loss needs labels 0 or 1");
      }
    }
  }
  t.values.resize(shard.y.rows(), shard.count);
  convert_targets(shard.y.data(), shard.count, shard.y.rows(), loss, nullptr, t.values.data());
  return t;
}

void convert_targets(const double* y, long n, long width, Loss loss, int32_t* labels, float* values) {
  if (loss == Loss::kSoftmax) {
    for (long j = 0; j < n; ++j) labels[j] = static_cast<int32_t>(y[j]);
  } else {
    for (long k = 0; k < n * width; ++k) values[k] = static_cast<float>(y[k]);
  }
}

}  // namespace nn_dist

namespace nn_dist {

void write_dataset(const std::string& path, const Matrix<float>& x, const Matrix<double>& y, bool integer_labels,
                   StoredType x_type, const std::string& x_name, const std::string& y_name) {
  h5::quiet_errors();
  h5::Handle file(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose);
  if (!file.valid()) throw Error(path + ": cannot create (folder missing or not writable?)");
  const hsize_t xdims[2] = {static_cast<hsize_t>(x.cols()), static_cast<hsize_t>(x.rows())};
  h5::Handle xspace(H5Screate_simple(2, xdims, nullptr), H5Sclose);
  const hid_t file_type = x_type == StoredType::kFloat32   ? H5T_IEEE_F32LE
                          : x_type == StoredType::kFloat64 ? H5T_IEEE_F64LE
                                                           : H5T_STD_I32LE;
  h5::Handle xs(H5Dcreate2(file.get(), x_name.c_str(), file_type, xspace.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                H5Dclose);
  if (!xs.valid() || H5Dwrite(xs.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x.data()) < 0) {
    throw Error(path + ": cannot write '" + x_name + "'");
  }
  const hsize_t ydims[2] = {static_cast<hsize_t>(y.cols()), static_cast<hsize_t>(y.rows())};
  const int yrank = (integer_labels || y.rows() == 1) ? 1 : 2;
  h5::Handle yspace(H5Screate_simple(yrank, ydims, nullptr), H5Sclose);
  h5::Handle ys(H5Dcreate2(file.get(), y_name.c_str(), integer_labels ? H5T_STD_I64LE : H5T_IEEE_F32LE, yspace.get(),
                           H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                H5Dclose);
  if (!ys.valid() || H5Dwrite(ys.get(), H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, y.data()) < 0) {
    throw Error(path + ": cannot write '" + y_name + "'");
  }
}

}  // namespace nn_dist
