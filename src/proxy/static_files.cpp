#include "proxy/static_files.hpp"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <ctime>

#include "http/chars.hpp"
#include "http/date.hpp"

namespace weir::proxy {
namespace {

int openat2_beneath(int dirfd, const char* path, uint64_t flags) {
  struct open_how how {};
  how.flags = flags;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
  long r;
  do {
    r = syscall(SYS_openat2, dirfd, path, &how, sizeof how);
  } while (r < 0 && errno == EINTR);
  return static_cast<int>(r);
}

StaticFailure failure_of_errno(int err) {
  switch (err) {
    case ENOENT:
    case ENOTDIR:
    case ENAMETOOLONG:
      return StaticFailure::NotFound;
    case EXDEV:
    case ELOOP:
      return StaticFailure::Escapes;
    case EACCES:
    case EPERM:
      return StaticFailure::Forbidden;
    default:
      return StaticFailure::Error;
  }
}

char lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

struct Mime {
  std::string_view ext;
  std::string_view type;
};

// Sorted by extension (lower case): binary-searched.
constexpr std::array kMimeTable = std::to_array<Mime>({
    {"aac", "audio/aac"},
    {"apng", "image/apng"},
    {"atom", "application/atom+xml"},
    {"avif", "image/avif"},
    {"bmp", "image/bmp"},
    {"css", "text/css; charset=utf-8"},
    {"csv", "text/csv; charset=utf-8"},
    {"eot", "application/vnd.ms-fontobject"},
    {"epub", "application/epub+zip"},
    {"flac", "audio/flac"},
    {"gif", "image/gif"},
    {"gz", "application/gzip"},
    {"htm", "text/html; charset=utf-8"},
    {"html", "text/html; charset=utf-8"},
    {"ico", "image/x-icon"},
    {"ics", "text/calendar; charset=utf-8"},
    {"jpeg", "image/jpeg"},
    {"jpg", "image/jpeg"},
    {"js", "text/javascript; charset=utf-8"},
    {"json", "application/json"},
    {"jsonld", "application/ld+json"},
    {"jxl", "image/jxl"},
    {"m4a", "audio/mp4"},
    {"map", "application/json"},
    {"md", "text/markdown; charset=utf-8"},
    {"mjs", "text/javascript; charset=utf-8"},
    {"mov", "video/quicktime"},
    {"mp3", "audio/mpeg"},
    {"mp4", "video/mp4"},
    {"oga", "audio/ogg"},
    {"ogg", "audio/ogg"},
    {"ogv", "video/ogg"},
    {"opus", "audio/opus"},
    {"otf", "font/otf"},
    {"pdf", "application/pdf"},
    {"png", "image/png"},
    {"rss", "application/rss+xml"},
    {"svg", "image/svg+xml"},
    {"tar", "application/x-tar"},
    {"tsv", "text/tab-separated-values; charset=utf-8"},
    {"ttf", "font/ttf"},
    {"txt", "text/plain; charset=utf-8"},
    {"vtt", "text/vtt; charset=utf-8"},
    {"wasm", "application/wasm"},
    {"wav", "audio/wav"},
    {"webm", "video/webm"},
    {"webmanifest", "application/manifest+json"},
    {"webp", "image/webp"},
    {"woff", "font/woff"},
    {"woff2", "font/woff2"},
    {"xhtml", "application/xhtml+xml"},
    {"xml", "application/xml"},
    {"yaml", "application/yaml"},
    {"yml", "application/yaml"},
    {"zip", "application/zip"},
    {"zst", "application/zstd"},
});
static_assert(std::is_sorted(kMimeTable.begin(), kMimeTable.end(),
                             [](const Mime& a, const Mime& b) { return a.ext < b.ext; }));
constexpr size_t kMaxExtension = 16;

std::string_view variant_extension(Encoding e) {
  switch (e) {
    case Encoding::Zstd:
      return ".zst";
    case Encoding::Brotli:
      return ".br";
    case Encoding::Gzip:
      return ".gz";
    case Encoding::Identity:
      break;
  }
  return {};
}

void append_hex(uint64_t v, std::string& out) {
  char buf[16];
  size_t n = 0;
  do {
    buf[n++] = "0123456789abcdef"[v & 0xf];
    v >>= 4;
  } while (v != 0);
  while (n != 0)
    out.push_back(buf[--n]);
}

void add(StaticAnswer& a, std::string_view name, std::string value) {
  a.fields.push_back({name, std::move(value)});
}

}  // namespace

OwnedFd& OwnedFd::operator=(OwnedFd&& o) noexcept {
  if (this != &o) reset(std::exchange(o.fd_, -1));
  return *this;
}

void OwnedFd::reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

uint16_t status_of(StaticFailure f) {
  switch (f) {
    case StaticFailure::None:
      return 200;
    case StaticFailure::Forbidden:
      return 403;
    case StaticFailure::Error:
      return 500;
    default:
      return 404;
  }
}

std::string_view to_string(StaticFailure f) {
  switch (f) {
    case StaticFailure::None:
      return "none";
    case StaticFailure::OutsidePrefix:
      return "outside strip_prefix";
    case StaticFailure::BadPath:
      return "bad path";
    case StaticFailure::TooLong:
      return "path too long";
    case StaticFailure::Hidden:
      return "hidden file";
    case StaticFailure::NotFound:
      return "not found";
    case StaticFailure::Escapes:
      return "symlink escapes root";
    case StaticFailure::NotRegular:
      return "not a regular file";
    case StaticFailure::Forbidden:
      return "permission denied";
    case StaticFailure::Error:
      return "i/o error";
  }
  return "?";
}

StaticFailure decode_static_path(std::string_view path, std::string_view strip_prefix,
                                 std::string& out) {
  out.clear();
  if (path.size() > kMaxStaticPath) return StaticFailure::TooLong;
  while (!strip_prefix.empty() && strip_prefix.back() == '/')
    strip_prefix.remove_suffix(1);
  if (!strip_prefix.empty()) {
    if (!path.starts_with(strip_prefix)) return StaticFailure::OutsidePrefix;
    path.remove_prefix(strip_prefix.size());
    if (!path.empty() && path[0] != '/') return StaticFailure::OutsidePrefix;
  } else if (path.empty() || path[0] != '/') {
    return StaticFailure::BadPath;
  }
  size_t i = 0;
  while (i < path.size()) {
    if (path[i] == '/') {
      ++i;
      continue;
    }
    if (!out.empty()) out.push_back('/');
    const size_t start = out.size();
    for (; i < path.size() && path[i] != '/'; ++i) {
      char c = path[i];
      if (c == '%') {
        if (path.size() - i < 3) return StaticFailure::BadPath;
        const int hi = http::chars::hex_digit(path[i + 1]),
                  lo = http::chars::hex_digit(path[i + 2]);
        if (hi < 0 || lo < 0) return StaticFailure::BadPath;
        c = static_cast<char>(hi * 16 + lo);
        if (c == '/') return StaticFailure::BadPath;
        i += 2;
      }
      if (c == '\0' || c == '\\') return StaticFailure::BadPath;
      out.push_back(c);
    }
    const std::string_view seg = std::string_view(out).substr(start);
    if (seg == "." || seg == "..") return StaticFailure::BadPath;
    if (seg[0] == '.') return StaticFailure::Hidden;
  }
  return StaticFailure::None;
}

std::string_view mime_type(std::string_view file_name) {
  constexpr std::string_view kDefault = "application/octet-stream";
  const size_t slash = file_name.rfind('/');
  if (slash != std::string_view::npos) file_name.remove_prefix(slash + 1);
  const size_t dot = file_name.rfind('.');
  if (dot == std::string_view::npos || dot == 0) return kDefault;
  const std::string_view ext = file_name.substr(dot + 1);
  if (ext.empty() || ext.size() > kMaxExtension) return kDefault;
  char buf[kMaxExtension];
  for (size_t k = 0; k < ext.size(); ++k)
    buf[k] = lower(ext[k]);
  const std::string_view key(buf, ext.size());
  const auto it = std::lower_bound(kMimeTable.begin(), kMimeTable.end(), key,
                                   [](const Mime& m, std::string_view k) { return m.ext < k; });
  return it != kMimeTable.end() && it->ext == key ? it->type : kDefault;
}

std::string make_etag(const struct stat& st, std::string_view suffix) {
  std::string s = "\"";
  append_hex(static_cast<uint64_t>(st.st_ino), s);
  s.push_back('-');
  append_hex(static_cast<uint64_t>(st.st_mtim.tv_sec) * 1000000000u +
                 static_cast<uint64_t>(st.st_mtim.tv_nsec),
             s);
  s.push_back('-');
  append_hex(static_cast<uint64_t>(st.st_size), s);
  s.append(suffix);
  s.push_back('"');
  return s;
}

std::string_view StaticAnswer::field(std::string_view name) const {
  for (const StaticField& f : fields)
    if (http::iequals(f.name, name)) return f.value;
  return {};
}

std::optional<StaticRoot> StaticRoot::open(const std::string& root, StaticOptions options,
                                           std::string& error) {
  const std::string_view idx = options.index;
  if (!idx.empty() &&
      (idx.find('/') != std::string_view::npos || idx.find('\0') != std::string_view::npos ||
       idx[0] == '.' || idx.size() > 255)) {
    error = "static index \"" + options.index + "\" is not a plain visible file name";
    return std::nullopt;
  }
  OwnedFd fd(::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!fd) {
    error = "static root " + root + ": " + std::strerror(errno);
    return std::nullopt;
  }
  if (::faccessat(fd.get(), ".", X_OK, AT_EACCESS) != 0) {
    error = "static root " + root + ": " + std::strerror(errno);
    return std::nullopt;
  }
  const int probe = openat2_beneath(fd.get(), ".", O_PATH | O_CLOEXEC);
  if (probe < 0) {
    error = errno == ENOSYS
                ? "static root " + root + ": the kernel lacks openat2 (needs Linux >= 5.6)"
                : "static root " + root + ": openat2: " + std::strerror(errno);
    return std::nullopt;
  }
  ::close(probe);
  return StaticRoot(std::move(fd), std::move(options));
}

OpenedFile StaticRoot::open_regular(std::string rel_path, bool apply_index) const {
  OpenedFile f;
  f.rel_path = std::move(rel_path);
  for (int attempt = 0; attempt < 2; ++attempt) {
    const char* p = f.rel_path.empty() ? "." : f.rel_path.c_str();
    OwnedFd path_fd(openat2_beneath(root_.get(), p, O_PATH | O_CLOEXEC));
    if (!path_fd) {
      f.failure = failure_of_errno(errno);
      return f;
    }
    struct stat st {};
    if (::fstat(path_fd.get(), &st) != 0) {
      f.failure = failure_of_errno(errno);
      return f;
    }
    if (S_ISDIR(st.st_mode) && attempt == 0 && apply_index && !options_.index.empty()) {
      if (!f.rel_path.empty()) f.rel_path.push_back('/');
      f.rel_path.append(options_.index);
      continue;
    }
    if (!S_ISREG(st.st_mode)) break;
    // A regular file a moment ago: open it for reading, without blocking should it have been
    // swapped for a FIFO, and check that it is still the same file.
    OwnedFd fd(openat2_beneath(root_.get(), p, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
    if (!fd) {
      f.failure = failure_of_errno(errno);
      return f;
    }
    if (::fstat(fd.get(), &f.st) != 0) {
      f.failure = failure_of_errno(errno);
      return f;
    }
    if (!S_ISREG(f.st.st_mode) || f.st.st_dev != st.st_dev || f.st.st_ino != st.st_ino) break;
    f.fd = std::move(fd);
    return f;
  }
  f.failure = StaticFailure::NotRegular;
  return f;
}

OpenedFile StaticRoot::resolve(std::string_view path, std::string_view strip_prefix) const {
  std::string rel;
  const StaticFailure bad = decode_static_path(path, strip_prefix, rel);
  if (bad != StaticFailure::None) {
    OpenedFile f;
    f.failure = bad;
    return f;
  }
  // "/file.txt/" names a directory: a file there is a 404 (ENOTDIR, as NGINX answers), not the
  // file again under a second URL whose relative links resolve elsewhere.
  const bool directory_form = !path.empty() && path.back() == '/';
  std::string asked = directory_form ? rel : std::string();
  OpenedFile f = open_regular(std::move(rel), true);
  if (directory_form && f.failure == StaticFailure::None && f.rel_path == asked) {
    f = OpenedFile{};
    f.failure = StaticFailure::NotFound;
  }
  return f;
}

std::pair<OpenedFile, Encoding> StaticRoot::open_variant(
    const OpenedFile& original, std::span<const Encoding> encodings) const {
  for (const Encoding e : encodings) {
    if (e == Encoding::Identity) break;
    std::string rel = original.rel_path;
    rel.append(variant_extension(e));
    OpenedFile v = open_regular(std::move(rel), false);
    if (v.failure != StaticFailure::None) continue;
    if (v.st.st_mtim.tv_sec < original.st.st_mtim.tv_sec) continue;  // stale
    return {std::move(v), e};
  }
  OpenedFile none;
  none.failure = StaticFailure::NotFound;
  return {std::move(none), Encoding::Identity};
}

StaticAnswer StaticRoot::serve(const StaticRequest& req) const {
  StaticAnswer a;
  if (req.method != http::Method::Get && req.method != http::Method::Head) {
    a.status = 405;
    add(a, "Allow", "GET, HEAD");
    return a;
  }
  const int64_t now = req.now != 0 ? req.now : static_cast<int64_t>(std::time(nullptr));

  OpenedFile file = resolve(req.path, req.strip_prefix);
  if (file.failure != StaticFailure::None) {
    a.failure = file.failure;
    a.status = status_of(file.failure);
    return a;
  }
  const std::string_view content_type = mime_type(file.rel_path);
  if (options_.precompressed && !req.encodings.empty()) {
    auto [variant, e] = open_variant(file, req.encodings);
    if (e != Encoding::Identity) {
      file = std::move(variant);
      a.encoding = e;
    }
  }
  std::string etag_suffix;  // "-br" for FILE.br
  if (a.encoding != Encoding::Identity) {
    etag_suffix = "-";
    etag_suffix.append(variant_extension(a.encoding).substr(1));
  }
  const std::string etag = make_etag(file.st, etag_suffix);
  const int64_t last_modified = std::min<int64_t>(file.st.st_mtim.tv_sec, now);
  std::string last_modified_text;
  http::format_http_date(last_modified, last_modified_text);
  const auto size = static_cast<uint64_t>(file.st.st_size);
  const http::Validators validators{etag, last_modified};

  switch (http::evaluate_preconditions(req.conditions, validators, req.method)) {
    case http::Precondition::NotModified:
      a.status = 304;
      add(a, "Last-Modified", std::move(last_modified_text));
      add(a, "ETag", etag);
      if (options_.precompressed) add(a, "Vary", "Accept-Encoding");
      return a;
    case http::Precondition::PreconditionFailed:
      a.status = 412;
      return a;
    case http::Precondition::Proceed:
      break;
  }

  const http::ByteRange range =
      http::evaluate_range(req.conditions, validators, req.method, size, now);
  if (range.kind == http::RangeKind::Unsatisfiable) {
    a.status = 416;
    std::string cr;
    http::format_unsatisfied_range(size, cr);
    add(a, "Content-Range", std::move(cr));
    add(a, "Accept-Ranges", "bytes");
    if (options_.precompressed) add(a, "Vary", "Accept-Encoding");
    return a;
  }
  const bool partial = range.kind == http::RangeKind::Satisfiable;
  a.status = partial ? 206 : 200;
  const uint64_t offset = partial ? range.offset : 0;
  const uint64_t length = partial ? range.length : size;
  add(a, "Content-Type", std::string(content_type));
  a.content_length = length;
  add(a, "Content-Length", std::to_string(length));
  add(a, "Last-Modified", std::move(last_modified_text));
  add(a, "ETag", etag);
  add(a, "Accept-Ranges", "bytes");
  if (partial) {
    std::string cr;
    http::format_content_range(offset, length, size, cr);
    add(a, "Content-Range", std::move(cr));
  }
  if (a.encoding != Encoding::Identity) add(a, "Content-Encoding", std::string(token(a.encoding)));
  if (options_.precompressed) add(a, "Vary", "Accept-Encoding");
  if (req.method == http::Method::Get) {
    a.fd = std::move(file.fd);
    a.offset = offset;
    a.length = length;
  }
  return a;
}

}  // namespace weir::proxy
