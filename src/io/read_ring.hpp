// Many preads in one system call, through an io_uring of this reader's own:
// copy_rows reads a block of a chunked X as one piece a chunk column (61 for
// h5py's chunks of 784 features), and each pread is a system call of its own.
// Where io_uring is missing or refused (kernels before 5.6, container seccomp
// profiles, kernel.io_uring_disabled), ok() is false and callers use pread.
#pragma once

#include <cstddef>

namespace nn_dist {

struct ReadRequest {
  int fd;
  std::size_t at;      // the first byte in the file
  std::size_t bytes;   // > 0
  unsigned char* out;  // bytes long
};

class ReadRing {
 public:
  ReadRing();  // a ring of kEntries reads, or none (ok() false)
  ~ReadRing();
  ReadRing(const ReadRing&) = delete;
  ReadRing& operator=(const ReadRing&) = delete;

  bool ok() const { return ring_fd_ >= 0; }
  // Reads the requests, kEntries at a time, each in one system call per
  // batch; done[i] gets the bytes request i read (0 where it failed, short
  // where the file ended or a signal came). The caller finishes every short
  // read with pread, which names the error. A kernel that cannot read
  // through the ring closes it (ok() false from then on). Allocates nothing.
  void read(const ReadRequest* requests, std::size_t count, std::size_t* done);

 private:
  static constexpr unsigned kEntries = 64;
  void close_ring();
  // One batch (count <= kEntries); false when the kernel cannot read through the ring.
  bool read_batch(const ReadRequest* requests, std::size_t count, std::size_t* done);

  int ring_fd_ = -1;
  void* sq_ring_ = nullptr;  // the submission ring (and the completion ring when the kernel maps them as one)
  void* cq_ring_ = nullptr;
  void* sqes_ = nullptr;
  std::size_t sq_bytes_ = 0, cq_bytes_ = 0, sqe_bytes_ = 0;
  unsigned *sq_head_ = nullptr, *sq_tail_ = nullptr, *sq_mask_ = nullptr, *sq_array_ = nullptr;
  unsigned *cq_head_ = nullptr, *cq_tail_ = nullptr, *cq_mask_ = nullptr;
  void* cqes_ = nullptr;
};

}  // namespace nn_dist
