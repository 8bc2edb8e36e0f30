// Every MPI call of nn_dist: session, collectives, error agreement, and the
// bucketed gradient allreduce that overlaps backprop.
#include "nn_dist/dist/comm.hpp"

#include <mpi.h>
#if defined(OPEN_MPI) && OPEN_MPI
#include <mpi-ext.h>
#endif

#include <algorithm>
#include <climits>

namespace nn_dist {

MpiSession::MpiSession(int* argc, char*** argv) {
  int provided = 0;
  MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
}

MpiSession::~MpiSession() { MPI_Finalize(); }

Communicator::Communicator() {
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
}

void Communicator::agree(const std::string& local_error) const {
  int mine = local_error.empty() ? size_ : rank_;
  int first = size_;
  MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  if (first == size_) return;
  std::string message = local_error;
  broadcast(&message, first);
  throw AgreedError(message);
}

void Communicator::sum(double* data, int count) const {
  MPI_Allreduce(MPI_IN_PLACE, data, count, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
}

long Communicator::max(long value) const {
  long out = value;
  MPI_Allreduce(&value, &out, 1, MPI_LONG, MPI_MAX, MPI_COMM_WORLD);
  return out;
}

long Communicator::min(long value) const {
  long out = value;
  MPI_Allreduce(&value, &out, 1, MPI_LONG, MPI_MIN, MPI_COMM_WORLD);
  return out;
}

void Communicator::broadcast(float* data, std::size_t count, int root) const {
  for (std::size_t done = 0; done < count;) {  // MPI counts are int
    const int chunk = static_cast<int>(std::min<std::size_t>(count - done, INT_MAX / 2));
    MPI_Bcast(data + done, chunk, MPI_FLOAT, root, MPI_COMM_WORLD);
    done += chunk;
  }
}

void Communicator::broadcast(int64_t* data, int count, int root) const {
  MPI_Bcast(data, count, MPI_INT64_T, root, MPI_COMM_WORLD);
}

void Communicator::broadcast(std::string* text, int root) const {
  int length = static_cast<int>(text->size());
  MPI_Bcast(&length, 1, MPI_INT, root, MPI_COMM_WORLD);
  text->resize(length);
  MPI_Bcast(text->data(), length, MPI_CHAR, root, MPI_COMM_WORLD);
}

std::vector<float> Communicator::allgather(const float* data, int count) const {
  std::vector<float> out(static_cast<std::size_t>(count) * size_);
  MPI_Allgather(data, count, MPI_FLOAT, out.data(), count, MPI_FLOAT, MPI_COMM_WORLD);
  return out;
}

void Communicator::barrier() const { MPI_Barrier(MPI_COMM_WORLD); }

void Communicator::abort(int code) const { MPI_Abort(MPI_COMM_WORLD, code); std::abort(); }

double Communicator::time() { return MPI_Wtime(); }

// Persistent requests (MPI-4, Open MPI's MPIX_ extension) are set up once, so
// a step starts and completes them without building a new schedule each time.
struct GradientSync::Requests {
  std::vector<MPI_Request> buckets;
  MPI_Request stats = MPI_REQUEST_NULL;
};

namespace {

void init_allreduce(void* buffer, int count, MPI_Datatype type, MPI_Request* request) {
#if defined(OMPI_HAVE_MPI_EXT_PCOLLREQ) && OMPI_HAVE_MPI_EXT_PCOLLREQ
  MPIX_Allreduce_init(MPI_IN_PLACE, buffer, count, type, MPI_SUM, MPI_COMM_WORLD, MPI_INFO_NULL, request);
#else
  (void)buffer, (void)count, (void)type;
  *request = MPI_REQUEST_NULL;
#endif
}

void start_allreduce(void* buffer, int count, MPI_Datatype type, MPI_Request* request) {
#if defined(OMPI_HAVE_MPI_EXT_PCOLLREQ) && OMPI_HAVE_MPI_EXT_PCOLLREQ
  (void)buffer, (void)count, (void)type;
  MPI_Start(request);
#else
  MPI_Iallreduce(MPI_IN_PLACE, buffer, count, type, MPI_SUM, MPI_COMM_WORLD, request);
#endif
}

}  // namespace

GradientSync::GradientSync(const Communicator& comm, float* grad, std::size_t grad_size,
                           const std::vector<GradientPiece>& pieces, std::size_t bucket_bytes, bool overlap)
    : comm_(comm), grad_(grad), overlap_(overlap), requests_(std::make_unique<Requests>()) {
  if (!overlap_) {
    buckets_.push_back({0, grad_size, pieces.size() - 1, false});
    return;
  }
  const std::size_t bucket_elements = std::max<std::size_t>(1, bucket_bytes / sizeof(float));
  std::size_t end = grad_size;
  for (std::size_t i = 0; i < pieces.size(); ++i) {
    const bool last = i + 1 == pieces.size();
    if (end - pieces[i].begin >= bucket_elements || last) {
      buckets_.push_back({pieces[i].begin, end, i, false});
      end = pieces[i].begin;
    }
  }
  requests_->buckets.resize(buckets_.size(), MPI_REQUEST_NULL);
  for (std::size_t b = 0; b < buckets_.size(); ++b) {
    init_allreduce(grad_ + buckets_[b].begin, static_cast<int>(buckets_[b].end - buckets_[b].begin), MPI_FLOAT,
                   &requests_->buckets[b]);
  }
  init_allreduce(stats_, 3, MPI_DOUBLE, &requests_->stats);
}

GradientSync::~GradientSync() {
#if defined(OMPI_HAVE_MPI_EXT_PCOLLREQ) && OMPI_HAVE_MPI_EXT_PCOLLREQ
  for (MPI_Request& r : requests_->buckets) {
    if (r != MPI_REQUEST_NULL) MPI_Request_free(&r);
  }
  if (requests_->stats != MPI_REQUEST_NULL) MPI_Request_free(&requests_->stats);
#endif
}

void GradientSync::start_stats(double loss, double correct, double count) {
  stats_[0] = loss;
  stats_[1] = correct;
  stats_[2] = count;
  if (!overlap_) return;
  start_allreduce(stats_, 3, MPI_DOUBLE, &requests_->stats);
  stats_active_ = true;
}

void GradientSync::start_bucket(std::size_t b) {
  start_allreduce(grad_ + buckets_[b].begin, static_cast<int>(buckets_[b].end - buckets_[b].begin), MPI_FLOAT,
                  &requests_->buckets[b]);
  buckets_[b].active = true;
}

void GradientSync::progress() {
  // Open MPI moves non-blocking collectives forward only inside MPI calls.
  const double t0 = MPI_Wtime();
  int flag = 0;
  if (stats_active_) MPI_Test(&requests_->stats, &flag, MPI_STATUS_IGNORE);
  for (std::size_t b = 0; b < next_bucket_; ++b) {
    if (buckets_[b].active) {
      MPI_Test(&requests_->buckets[b], &flag, MPI_STATUS_IGNORE);
      if (flag) buckets_[b].active = false;
      break;  // one test drives the whole progress engine
    }
  }
  test_seconds_ += MPI_Wtime() - t0;
}

void GradientSync::piece_done(std::size_t piece_index) {
  if (!overlap_) return;
  if (next_bucket_ < buckets_.size() && buckets_[next_bucket_].last_piece == piece_index) {
    start_bucket(next_bucket_++);
  }
  progress();
}

void GradientSync::all_pieces_done() {
  if (!overlap_) return;
  while (next_bucket_ < buckets_.size()) start_bucket(next_bucket_++);
}

void GradientSync::wait_bucket(std::size_t b) {
  if (!overlap_) {
    MPI_Allreduce(MPI_IN_PLACE, grad_ + buckets_[b].begin, static_cast<int>(buckets_[b].end - buckets_[b].begin),
                  MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    return;
  }
  if (buckets_[b].active) MPI_Wait(&requests_->buckets[b], MPI_STATUS_IGNORE);
  buckets_[b].active = false;
}

const double* GradientSync::wait_stats() {
  if (!overlap_) {
    MPI_Allreduce(MPI_IN_PLACE, stats_, 3, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    return stats_;
  }
  if (stats_active_) MPI_Wait(&requests_->stats, MPI_STATUS_IGNORE);
  stats_active_ = false;
  return stats_;
}

}  // namespace nn_dist
