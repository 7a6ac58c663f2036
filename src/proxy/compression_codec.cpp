// The streaming compressors (compression.hpp): one state machine for the BodyFilter contract
// (staging for a nearly full `out`, the flush policy, holding back the last byte of a flush that
// is not complete), over a small run() per library: zlib (gzip wrapper), brotli, zstd.
#include <zlib.h>

#include <algorithm>
#include <array>
#include <bit>
#include <climits>
#include <cstddef>
#include <cstdlib>
#include <cstring>

#include <brotli/encode.h>
// ZSTD_customMem, ZSTD_createCCtx_advanced, ZSTD_getCParams, ZSTD_c_srcSizeHint: the advanced API,
// exported by the shared library; stable in practice since zstd 1.4, pinned by the distribution.
#define ZSTD_STATIC_LINKING_ONLY
#include <zstd.h>

#include "proxy/compression.hpp"

namespace weir::proxy {
namespace {

// The window caps (see compression.hpp for what they cost).
constexpr int kGzipWindowBits = 15;
constexpr int kGzipMemLevel = 8;
constexpr int kBrotliWindowBits = 18;
// Brotli picks a bigger hasher (quality 4: 4 MiB more) for inputs it expects to be 1 MiB or more;
// stating a smaller size keeps the bound whatever the sizes of the pieces handed in.
constexpr uint32_t kBrotliMaxSizeHint = (1u << 20) - 1;
// Input per brotli call: each call ends with a flush, so a meta-block (and the scratch brotli
// allocates for it) covers at most this much even when a big piece is handed in at once.
constexpr size_t kBrotliMaxRun = 16 * 1024;
constexpr int kZstdWindowLog = 19;
constexpr int kZstdTableLog = 18;  // hashLog and chainLog

// Library allocations of one compressor, counted through the libraries' allocator hooks. A
// header before each block remembers its size (the free hooks are not told).
struct Allocs {
  static constexpr size_t kHeader = alignof(std::max_align_t);
  size_t current = 0;
  size_t peak = 0;
  size_t count = 0;

  void* alloc(size_t n) {
    if (n > SIZE_MAX - kHeader) return nullptr;
    char* p = static_cast<char*>(std::malloc(n + kHeader));
    if (!p) return nullptr;
    std::memcpy(p, &n, sizeof n);
    current += n;
    peak = std::max(peak, current);
    ++count;
    return p + kHeader;
  }
  void free(void* q) {
    if (!q) return;
    char* p = static_cast<char*>(q) - kHeader;
    size_t n = 0;
    std::memcpy(&n, p, sizeof n);
    current -= n;
    std::free(p);
  }
};

void* alloc_hook(void* opaque, size_t n) {
  return static_cast<Allocs*>(opaque)->alloc(n);
}
void free_hook(void* opaque, void* p) {
  static_cast<Allocs*>(opaque)->free(p);
}
voidpf zalloc_hook(voidpf opaque, uInt items, uInt size) {
  return alloc_hook(opaque, size_t{items} * size_t{size});  // 32 × 32 bits fit in 64
}
void zfree_hook(voidpf opaque, voidpf p) {
  free_hook(opaque, p);
}

enum class Op : uint8_t {
  Flush,   // compress the input, then make everything so far decodable
  Finish,  // compress the input, then end the stream
};

struct Run {
  size_t consumed = 0;
  size_t produced = 0;
  bool complete = false;  // all input taken and the operation's output all produced
  bool error = false;
};

// The BodyFilter side, common to the three libraries.
class StreamCompressor : public Compressor {
 public:
  // `max_run`: input per library call (each ends with a flush), unbounded if SIZE_MAX.
  StreamCompressor(size_t object_size, size_t max_run)
      : object_size_(object_size), max_run_(max_run) {}

  Step on_body(std::string_view in, bool end, Buffer& out) final;
  size_t memory() const final { return allocs_.current + object_size_; }
  size_t peak_memory() const final { return allocs_.peak + object_size_; }
  size_t allocations() const final { return allocs_.count; }
  bool failed() const final { return failed_; }

 protected:
  // One call of the library: input from `in`, output into `out` (never less than kStage bytes).
  virtual Run run(Op op, std::string_view in, std::span<char> out) = 0;

  Allocs allocs_;

 private:
  // Output goes straight into `out` when it has this much room at its tail, else through the
  // stage: so every library call has room for its flush markers (zlib needs more than 6 bytes
  // to finish a flush without repeating its marker).
  static constexpr size_t kStage = 64;

  std::span<char> target(Buffer& out);

  size_t object_size_;
  size_t max_run_;
  std::array<char, kStage> stage_{};
  size_t stage_at_ = 0;  // stage_[stage_at_, stage_len_) is still to go into `out`
  size_t stage_len_ = 0;
  size_t held_ = 0;        // leading bytes of the next input the library has already taken
  bool flushing_ = false;  // a flush has all its input but not yet all its output
  bool finished_ = false;  // the stream's end is produced (and in `out` once the stage is)
  bool failed_ = false;
};

std::span<char> StreamCompressor::target(Buffer& out) {
  if (out.free_space() == 0) return {};
  std::span<char> w = out.writable();
  if (w.size() < kStage && out.free_space() > w.size()) {
    out.compact();
    w = out.writable();
  }
  if (w.size() >= kStage) return w;
  return stage_;
}

BodyFilter::Step StreamCompressor::on_body(std::string_view in, bool end, Buffer& out) {
  Step step;
  size_t pos = std::min(held_, in.size());  // in[0, pos) is in the library
  while (!failed_) {
    stage_at_ += out.append(std::string_view(stage_.data(), stage_len_).substr(stage_at_));
    if (stage_at_ != stage_len_) break;  // `out` is full
    if (finished_) {
      step.done = true;
      break;
    }
    Op op = Op::Flush;
    std::string_view input;
    if (flushing_) {
      // The flush in progress first: a library must not be given new input in the middle.
    } else if (end || pos < in.size()) {
      input = in.substr(pos);
      if (input.size() > max_run_)
        input = input.substr(0, max_run_);
      else if (end)
        op = Op::Finish;
    } else {
      break;  // nothing to do
    }
    std::span<char> dst = target(out);
    if (dst.empty()) break;
    const bool staged = dst.data() == stage_.data();
    const Run r = run(op, input, dst);
    if (r.error) {
      failed_ = true;
      break;
    }
    pos += r.consumed;
    if (staged) {
      stage_at_ = 0;
      stage_len_ = r.produced;
    } else {
      out.commit(r.produced);
    }
    if (op == Op::Finish) {
      finished_ = r.complete;
    } else if (r.complete) {
      flushing_ = false;
    } else if (r.consumed == input.size()) {
      flushing_ = true;  // the library has all its input, not yet all its output
    }
    if (!r.complete && r.consumed == 0 && r.produced == 0) break;  // the library is stuck
  }
  // The input of a flush is reported used only once all its output is in `out`: until then the
  // last byte is held back, so the exchange calls again (with that byte first) even if no more
  // input comes, and the rest of the flush reaches the client.
  const bool pending = flushing_ || stage_at_ != stage_len_;
  if (pending && !end && pos > 0 && pos == in.size()) {
    step.used = pos - 1;
    held_ = 1;
  } else {
    step.used = pos;
    held_ = 0;
  }
  return step;
}

// ---------------------------------------------------------------------------------------------
// gzip (zlib, RFC 1952)

class GzipCompressor final : public StreamCompressor {
 public:
  GzipCompressor() : StreamCompressor(sizeof(GzipCompressor), SIZE_MAX) {}
  ~GzipCompressor() override {
    if (ready_) deflateEnd(&z_);
  }

  bool init(int level, uint64_t size_hint) {
    // A known length needs no window beyond it (as nginx does): half the memory per bit less.
    int window_bits = kGzipWindowBits;
    int mem_level = kGzipMemLevel;
    if (size_hint > 0) {
      while (window_bits > 9 && size_hint < (uint64_t{1} << (window_bits - 1)) - 262) {
        --window_bits;
        --mem_level;
      }
      mem_level = std::max(mem_level, 1);
    }
    z_.zalloc = zalloc_hook;
    z_.zfree = zfree_hook;
    z_.opaque = &allocs_;
    ready_ = deflateInit2(&z_, std::clamp(level, 1, 9), Z_DEFLATED, window_bits + 16, mem_level,
                          Z_DEFAULT_STRATEGY) == Z_OK;
    return ready_;
  }

 private:
  Run run(Op op, std::string_view in, std::span<char> out) override {
    const size_t in_size = std::min<size_t>(in.size(), UINT_MAX);
    const size_t out_size = std::min<size_t>(out.size(), UINT_MAX);
    z_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    z_.avail_in = static_cast<uInt>(in_size);
    z_.next_out = reinterpret_cast<Bytef*>(out.data());
    z_.avail_out = static_cast<uInt>(out_size);
    const int rc = deflate(&z_, op == Op::Finish ? Z_FINISH : Z_SYNC_FLUSH);
    Run r;
    r.consumed = in_size - z_.avail_in;
    r.produced = out_size - z_.avail_out;
    if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) {
      r.error = true;
      return r;
    }
    // A flush is complete once deflate stops with output room to spare (zlib.h).
    r.complete = op == Op::Finish ? rc == Z_STREAM_END
                                  : in_size == in.size() && z_.avail_in == 0 && z_.avail_out != 0;
    return r;
  }

  z_stream z_{};
  bool ready_ = false;
};

// ---------------------------------------------------------------------------------------------
// br (brotli, RFC 7932)

class BrotliCompressor final : public StreamCompressor {
 public:
  BrotliCompressor() : StreamCompressor(sizeof(BrotliCompressor), kBrotliMaxRun) {}
  ~BrotliCompressor() override {
    if (s_) BrotliEncoderDestroyInstance(s_);
  }

  bool init(int level, uint64_t size_hint) {
    s_ = BrotliEncoderCreateInstance(alloc_hook, free_hook, &allocs_);
    if (!s_) return false;
    int lgwin = kBrotliWindowBits;
    if (size_hint > 0 && size_hint < (uint64_t{1} << lgwin))
      lgwin = std::max(BROTLI_MIN_WINDOW_BITS, static_cast<int>(std::bit_width(size_hint - 1)));
    const uint32_t hint =
        size_hint > 0 ? static_cast<uint32_t>(std::min<uint64_t>(size_hint, kBrotliMaxSizeHint))
                      : kBrotliMaxSizeHint;
    return BrotliEncoderSetParameter(s_, BROTLI_PARAM_QUALITY,
                                     static_cast<uint32_t>(std::clamp(level, 0, 11))) &&
           BrotliEncoderSetParameter(s_, BROTLI_PARAM_LGWIN, static_cast<uint32_t>(lgwin)) &&
           BrotliEncoderSetParameter(s_, BROTLI_PARAM_SIZE_HINT, hint);
  }

 private:
  Run run(Op op, std::string_view in, std::span<char> out) override {
    size_t avail_in = in.size();
    const uint8_t* next_in = reinterpret_cast<const uint8_t*>(in.data());
    size_t avail_out = out.size();
    uint8_t* next_out = reinterpret_cast<uint8_t*>(out.data());
    Run r;
    if (!BrotliEncoderCompressStream(
            s_, op == Op::Finish ? BROTLI_OPERATION_FINISH : BROTLI_OPERATION_FLUSH, &avail_in,
            &next_in, &avail_out, &next_out, nullptr)) {
      r.error = true;
      return r;
    }
    r.consumed = in.size() - avail_in;
    r.produced = out.size() - avail_out;
    r.complete = avail_in == 0 && !BrotliEncoderHasMoreOutput(s_) &&
                 (op == Op::Flush || BrotliEncoderIsFinished(s_));
    return r;
  }

  BrotliEncoderState* s_ = nullptr;
};

// ---------------------------------------------------------------------------------------------
// zstd (RFC 8878)

class ZstdCompressor final : public StreamCompressor {
 public:
  ZstdCompressor() : StreamCompressor(sizeof(ZstdCompressor), SIZE_MAX) {}
  ~ZstdCompressor() override { ZSTD_freeCCtx(c_); }

  bool init(int level, uint64_t size_hint) {
    c_ = ZSTD_createCCtx_advanced(ZSTD_customMem{alloc_hook, free_hook, &allocs_});
    if (!c_) return false;
    level = std::clamp(level, 1, 19);
    // The level's parameters for this size, with the window and tables capped (zstd caps the
    // tables by the window only when the length is known).
    const ZSTD_compressionParameters p =
        ZSTD_getCParams(level, size_hint > 0 ? size_hint : ZSTD_CONTENTSIZE_UNKNOWN, 0);
    bool ok = !ZSTD_isError(ZSTD_CCtx_setParameter(c_, ZSTD_c_compressionLevel, level)) &&
              !ZSTD_isError(ZSTD_CCtx_setParameter(
                  c_, ZSTD_c_windowLog, std::min(static_cast<int>(p.windowLog), kZstdWindowLog))) &&
              !ZSTD_isError(ZSTD_CCtx_setParameter(
                  c_, ZSTD_c_hashLog, std::min(static_cast<int>(p.hashLog), kZstdTableLog))) &&
              !ZSTD_isError(ZSTD_CCtx_setParameter(
                  c_, ZSTD_c_chainLog, std::min(static_cast<int>(p.chainLog), kZstdTableLog)));
    if (ok && size_hint > 0)
      ok = !ZSTD_isError(ZSTD_CCtx_setParameter(
          c_, ZSTD_c_srcSizeHint, static_cast<int>(std::min<uint64_t>(size_hint, INT_MAX))));
    if (!ok) return false;
    // The workspace is allocated now (the first call would), not while the body streams.
    ZSTD_inBuffer zin{nullptr, 0, 0};
    ZSTD_outBuffer zout{nullptr, 0, 0};
    return !ZSTD_isError(ZSTD_compressStream2(c_, &zout, &zin, ZSTD_e_continue));
  }

 private:
  Run run(Op op, std::string_view in, std::span<char> out) override {
    ZSTD_inBuffer zin{in.data(), in.size(), 0};
    ZSTD_outBuffer zout{out.data(), out.size(), 0};
    const size_t left =
        ZSTD_compressStream2(c_, &zout, &zin, op == Op::Finish ? ZSTD_e_end : ZSTD_e_flush);
    Run r;
    r.consumed = zin.pos;
    r.produced = zout.pos;
    if (ZSTD_isError(left)) {
      r.error = true;
      return r;
    }
    r.complete = left == 0 && zin.pos == zin.size;
    return r;
  }

  ZSTD_CCtx* c_ = nullptr;
};

template <class C>
std::unique_ptr<Compressor> make(int level, uint64_t size_hint) {
  auto c = std::make_unique<C>();
  if (!c->init(level, size_hint)) return nullptr;
  return c;
}

}  // namespace

std::unique_ptr<Compressor> make_compressor(Encoding e, int level, uint64_t size_hint) {
  switch (e) {
    case Encoding::Gzip:
      return make<GzipCompressor>(level, size_hint);
    case Encoding::Brotli:
      return make<BrotliCompressor>(level, size_hint);
    case Encoding::Zstd:
      return make<ZstdCompressor>(level, size_hint);
    case Encoding::Identity:
      break;
  }
  return nullptr;
}

}  // namespace weir::proxy
