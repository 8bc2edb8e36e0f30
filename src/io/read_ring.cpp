// ReadRing: the io_uring system calls and shared rings, set up by hand (no
// liburing): the submission ring's tail is ours to advance, its head the
// kernel's; the completion ring the other way round.
#include "io/read_ring.hpp"

#include <linux/io_uring.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>

namespace nn_dist {

namespace {

unsigned load_acquire(const unsigned* p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
void store_release(unsigned* p, unsigned v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }

void* map_ring(int fd, std::size_t bytes, off_t what) {
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, what);
  return p == MAP_FAILED ? nullptr : p;
}

}  // namespace

ReadRing::ReadRing() {
  io_uring_params params{};
  ring_fd_ = static_cast<int>(syscall(__NR_io_uring_setup, kEntries, &params));
  if (ring_fd_ < 0) return;
  sq_bytes_ = params.sq_off.array + params.sq_entries * sizeof(unsigned);
  cq_bytes_ = params.cq_off.cqes + params.cq_entries * sizeof(io_uring_cqe);
  const bool single = (params.features & IORING_FEAT_SINGLE_MMAP) != 0;
  if (single) sq_bytes_ = cq_bytes_ = std::max(sq_bytes_, cq_bytes_);
  sqe_bytes_ = params.sq_entries * sizeof(io_uring_sqe);
  sq_ring_ = map_ring(ring_fd_, sq_bytes_, IORING_OFF_SQ_RING);
  cq_ring_ = single ? sq_ring_ : map_ring(ring_fd_, cq_bytes_, IORING_OFF_CQ_RING);
  sqes_ = map_ring(ring_fd_, sqe_bytes_, IORING_OFF_SQES);
  if (sq_ring_ == nullptr || cq_ring_ == nullptr || sqes_ == nullptr || params.sq_entries < kEntries) {
    close_ring();
    return;
  }
  char* sq = static_cast<char*>(sq_ring_);
  char* cq = static_cast<char*>(cq_ring_);
  sq_head_ = reinterpret_cast<unsigned*>(sq + params.sq_off.head);
  sq_tail_ = reinterpret_cast<unsigned*>(sq + params.sq_off.tail);
  sq_mask_ = reinterpret_cast<unsigned*>(sq + params.sq_off.ring_mask);
  sq_array_ = reinterpret_cast<unsigned*>(sq + params.sq_off.array);
  cq_head_ = reinterpret_cast<unsigned*>(cq + params.cq_off.head);
  cq_tail_ = reinterpret_cast<unsigned*>(cq + params.cq_off.tail);
  cq_mask_ = reinterpret_cast<unsigned*>(cq + params.cq_off.ring_mask);
  cqes_ = cq + params.cq_off.cqes;
}

ReadRing::~ReadRing() { close_ring(); }

void ReadRing::close_ring() {
  if (sqes_ != nullptr) munmap(sqes_, sqe_bytes_);
  if (cq_ring_ != nullptr && cq_ring_ != sq_ring_) munmap(cq_ring_, cq_bytes_);
  if (sq_ring_ != nullptr) munmap(sq_ring_, sq_bytes_);
  sqes_ = cq_ring_ = sq_ring_ = nullptr;
  if (ring_fd_ >= 0) close(ring_fd_);
  ring_fd_ = -1;
}

void ReadRing::read(const ReadRequest* requests, std::size_t count, std::size_t* done) {
  std::fill(done, done + count, std::size_t{0});
  for (std::size_t first = 0; first < count && ok(); first += kEntries) {
    const std::size_t n = std::min<std::size_t>(kEntries, count - first);
    if (!read_batch(requests + first, n, done + first)) close_ring();
  }
}

bool ReadRing::read_batch(const ReadRequest* requests, std::size_t count, std::size_t* done) {
  const unsigned start = *sq_tail_, end = start + static_cast<unsigned>(count), mask = *sq_mask_;
  io_uring_sqe* sqes = static_cast<io_uring_sqe*>(sqes_);
  for (unsigned i = 0; i < count; ++i) {
    const unsigned slot = (start + i) & mask;
    io_uring_sqe& e = sqes[slot];
    std::memset(&e, 0, sizeof e);
    e.opcode = IORING_OP_READ;
    e.fd = requests[i].fd;
    e.off = requests[i].at;
    e.addr = reinterpret_cast<std::uintptr_t>(requests[i].out);
    e.len = static_cast<unsigned>(requests[i].bytes);
    e.user_data = i;
    sq_array_[slot] = slot;
  }
  store_release(sq_tail_, end);
  std::size_t completed = 0;
  bool readable = true, submit = true;
  const io_uring_cqe* cqes = static_cast<const io_uring_cqe*>(cqes_);
  // The kernel writes into the requests' buffers until their reads complete:
  // wait for every read it took. Reads of cached pages complete inside the
  // call that submits them, so a batch is usually one call.
  while (completed < count) {
    const unsigned taken = load_acquire(sq_head_) - start;
    if (!submit && taken == completed) {  // the ring refuses reads and none is in flight:
      store_release(sq_tail_, start + taken);  // the rest are the caller's (done 0)
      return false;
    }
    const unsigned to_submit = submit ? static_cast<unsigned>(count) - taken : 0;
    if (syscall(__NR_io_uring_enter, ring_fd_, to_submit, 1, IORING_ENTER_GETEVENTS, nullptr, 0) < 0 &&
        errno != EINTR && errno != EAGAIN && errno != EBUSY) {
      submit = false;
    }
    unsigned head = *cq_head_;
    for (const unsigned last = load_acquire(cq_tail_); head != last; ++head) {
      const io_uring_cqe& c = cqes[head & *cq_mask_];
      if (c.res > 0) done[c.user_data] = static_cast<std::size_t>(c.res);
      if (c.res == -EINVAL || c.res == -EOPNOTSUPP) readable = false;  // no IORING_OP_READ (kernels before 5.6)
      ++completed;
    }
    store_release(cq_head_, head);
  }
  return readable;
}

}  // namespace nn_dist
