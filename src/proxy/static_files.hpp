#pragma once
// Static files (edge.md "Static files"): a directory served read-only, as the self-contained
// core the static route handler calls. Files and syscalls only: no sockets, no event loop, no
// exchange. Linux >= 5.6 (openat2).
//
// Never outside the root. A request path goes through two gates:
//  1. decode_static_path (pure): strip `strip_prefix` on a segment boundary, percent-decode once,
//     and refuse instead of normalizing: an encoded '/' or '\' (%2f %5c), a raw '\', a NUL (raw
//     or %00), an invalid escape, a "." or ".." segment (raw or encoded, e.g. %2e%2e), a segment
//     starting with '.' (hidden: .git, .env, and also .well-known — serve ACME challenges from a
//     route of their own), a path longer than kMaxStaticPath. Empty segments ("//") collapse.
//  2. every open is openat2(root_fd, relative path, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS): a
//     symlink resolving outside the root (or an absolute one) fails with EXDEV, a /proc magic
//     link with ELOOP; symlinks that stay inside the root work. No user-space symlink walking.
//
// Opening order (so a FIFO or a device in the tree can neither block the worker nor be opened):
// openat2 with O_PATH (opens nothing, cannot block), fstat; only a regular file is then opened
// O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC by the same path and fstat'ed again, and must be
// the same regular file (device and inode), else 404. O_NONBLOCK keeps a FIFO swapped in between
// from blocking; it is meaningless for regular files (read/sendfile/splice work as usual).
// A directory is answered with its `index` file (opened the same way, beneath the root); no
// index → 404; never a listing, never a redirect.
//
// Validators: Last-Modified is the file's mtime (seconds), clamped to `now` (RFC 9110 8.8.2.1).
// ETag is strong: "\"<ino>-<mtime ns>-<size>\"" in lower-case hex, e.g.
// "\"2a1f-17c1d2e3f4a5b6c7-1f4\"", so a change of content through rewrite, rename-over or touch
// changes it. It is per machine: two servers with copies of the tree give different ETags (inode
// numbers differ).
//
// Precompressed variants (`precompressed: true`): for the acceptable codings the caller ranks
// (best first; Identity in the list stops the search), FILE.zst / FILE.br / FILE.gz is served
// if it is a regular file beneath the root whose mtime is not older (in whole seconds) than the
// original's (a stale variant is skipped; gzip -k, brotli -k and zstd keep the original's mtime).
// The original must exist. The answer then has Content-Encoding, the variant's own length,
// Last-Modified and ETag (the variant's file validators with "-zst"/"-br"/"-gz" inside the
// quotes), and the original's Content-Type. With `precompressed` on, every 200/206/304/416 has
// `Vary: Accept-Encoding`. Conditionals and ranges apply to the selected variant's bytes.
#include <sys/stat.h>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "http/conditional.hpp"
#include "http/parser.hpp"
#include "proxy/compression.hpp"

namespace weir::proxy {

// Longest request path (as received, before decoding) looked at; longer → 404.
inline constexpr size_t kMaxStaticPath = 4096;

// An owned file descriptor, closed on destruction.
class OwnedFd {
 public:
  OwnedFd() = default;
  explicit OwnedFd(int fd) : fd_(fd) {}
  OwnedFd(OwnedFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  OwnedFd& operator=(OwnedFd&& o) noexcept;
  OwnedFd(const OwnedFd&) = delete;
  OwnedFd& operator=(const OwnedFd&) = delete;
  ~OwnedFd() { reset(); }
  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  void reset(int fd = -1);
  // Gives up ownership: the caller closes the returned descriptor.
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_ = -1;
};

// Why a request got no file. All but Forbidden and Error answer 404.
enum class StaticFailure : uint8_t {
  None,
  OutsidePrefix,  // the path does not start with strip_prefix on a segment boundary
  BadPath,        // bad escape, encoded '/' or '\', raw '\', NUL, "." or ".." segment
  TooLong,        // path longer than kMaxStaticPath
  Hidden,         // a segment starting with '.'
  NotFound,       // ENOENT, ENOTDIR, ENAMETOOLONG
  Escapes,        // a symlink leading outside the root or a magic link (EXDEV, ELOOP)
  NotRegular,     // a FIFO, socket or device; a directory without index; changed while opened
  Forbidden,      // EACCES, EPERM → 403
  Error,          // any other errno (EMFILE, EIO, ...) → 500
};
uint16_t status_of(StaticFailure f);
std::string_view to_string(StaticFailure f);

// Gate 1 (pure, allocation only into `out`): `path` is the request's path as received (no
// query). On None, `out` is the decoded path relative to the root, segments joined by '/', ""
// for the root itself. `strip_prefix` ("/assets" or "/assets/"; "" for none) is compared byte
// for byte against the raw path and must be followed by '/' or the end.
StaticFailure decode_static_path(std::string_view path, std::string_view strip_prefix,
                                 std::string& out);

// The Content-Type for a file name, from its extension (case-insensitive) in a built-in table:
// text types and JavaScript with "; charset=utf-8"; "application/octet-stream" otherwise.
std::string_view mime_type(std::string_view file_name);

// "\"<ino>-<mtime ns>-<size>\"" (hex), with `suffix` ("-br") before the closing quote.
std::string make_etag(const struct stat& st, std::string_view suffix = {});

struct StaticOptions {
  std::string index = "index.html";  // a plain file name; "" = directories are 404
  bool precompressed = false;
};

struct OpenedFile {
  OwnedFd fd;  // O_RDONLY regular file
  struct stat st {};
  std::string rel_path;  // relative to the root, after the index was applied
  StaticFailure failure = StaticFailure::None;
};

struct StaticRequest {
  http::Method method = http::Method::Get;
  std::string_view path;          // as received, without the query
  std::string_view strip_prefix;  // the route's, "" for none
  http::ConditionalHeaders conditions;
  std::span<const Encoding> encodings;  // acceptable codings, best first (used if precompressed)
  int64_t now = 0;                      // unix seconds (Date of the answer); 0 = read the clock
};

struct StaticField {
  std::string_view name;  // static text
  std::string value;
};

struct StaticAnswer {
  uint16_t status = 404;  // 200, 206, 304, 403, 404, 405, 412, 416, 500
  StaticFailure failure = StaticFailure::None;
  // The fields to send, in order: Content-Type, Content-Length, Last-Modified, ETag,
  // Accept-Ranges, Content-Range, Content-Encoding, Vary, Allow, each only where it applies.
  // 200/206: all representation fields (HEAD: those of the GET). 304: Last-Modified, ETag, Vary.
  // 416: Content-Range "bytes */LEN", Accept-Ranges, Vary. 405: Allow. Others: none.
  std::vector<StaticField> fields;
  Encoding encoding = Encoding::Identity;  // the variant served
  // The body: `length` bytes of `fd` from `offset` (200 to GET: the whole file; 206: the range).
  // No fd and length 0 for HEAD, 304 and every error. The fd stays valid while the answer lives.
  OwnedFd fd;
  uint64_t offset = 0;
  uint64_t length = 0;
  // The Content-Length field's value as a number (200/206; HEAD: what the GET would send).
  uint64_t content_length = 0;

  std::string_view field(std::string_view name) const;  // first value of `name`, "" if none
};

class StaticRoot {
 public:
  // Opens `root` (O_PATH | O_DIRECTORY) once and probes openat2 beneath it. nullopt and a
  // one-line `error` when the root is missing, not a directory, unreadable, when `index` is not
  // a plain visible file name, or when the kernel lacks openat2 (ENOSYS, Linux < 5.6, or a
  // seccomp filter refusing it).
  static std::optional<StaticRoot> open(const std::string& root, StaticOptions options,
                                        std::string& error);

  // Gates 1 and 2: the regular file a request path names (a directory's index).
  OpenedFile resolve(std::string_view path, std::string_view strip_prefix) const;

  // The best precompressed variant of `original` (an OpenedFile from resolve) among
  // `encodings`, or a failed OpenedFile (and Identity) when none qualifies.
  std::pair<OpenedFile, Encoding> open_variant(const OpenedFile& original,
                                               std::span<const Encoding> encodings) const;

  // The whole answer: 405, resolve, variant, conditionals (RFC 9110 13.2.2), Range / If-Range.
  StaticAnswer serve(const StaticRequest& req) const;

  const StaticOptions& options() const { return options_; }
  int fd() const { return root_.get(); }

 private:
  StaticRoot(OwnedFd root, StaticOptions options)
      : root_(std::move(root)), options_(std::move(options)) {}
  // The regular file at `rel_path` (O_PATH, fstat, then O_RDONLY and fstat again); a directory
  // becomes its index when `apply_index`.
  OpenedFile open_regular(std::string rel_path, bool apply_index) const;

  OwnedFd root_;
  StaticOptions options_;
};

}  // namespace weir::proxy
