#include "proxy/static_files.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "http/date.hpp"

namespace weir::proxy {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kMtime = 1700000000;  // Tue, 14 Nov 2023 22:13:20 GMT
constexpr int64_t kNow = kMtime + 3600;

void write_file(const std::string& path, std::string_view content, int64_t mtime = kMtime,
                long nsec = 0) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0) << path;
  ASSERT_EQ(::write(fd, content.data(), content.size()), static_cast<ssize_t>(content.size()));
  const struct timespec times[2] = {{mtime, nsec}, {mtime, nsec}};
  ASSERT_EQ(::futimens(fd, times), 0);
  ::close(fd);
}

std::string read_range(const StaticAnswer& a) {
  std::string s(a.length, '\0');
  EXPECT_EQ(::pread(a.fd.get(), s.data(), s.size(), static_cast<off_t>(a.offset)),
            static_cast<ssize_t>(s.size()));
  return s;
}

std::string date(int64_t t) {
  std::string s;
  http::format_http_date(t, s);
  return s;
}

class StaticFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/weir-static-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    base_ = tmpl;
    root_ = base_ + "/root";
    const std::string r = root_ + "/";
    for (const char* d :
         {"", "/js", "/docs", "/blog", "/.git", "/.well-known", "/sub", "/dir.txt.gz"}) {
      fs::create_directories(root_ + d);
    }
    fs::create_directories(base_ + "/outside");
    write_file(base_ + "/outside/secret.txt", "secret");
    write_file(r + "index.html", "<h1>home</h1>");
    write_file(r + "app.css", "body{color:red}");
    write_file(r + "app.css.zst", "ZSTD-BYTES");
    write_file(r + "app.css.br", "BROTLI-BYTES");
    write_file(r + "app.css.gz", "GZIP-BYTES");
    write_file(r + "only.js.gz", "GZ");  // no original
    write_file(r + "stale.txt", "new text", kMtime);
    write_file(r + "stale.txt.gz", "old gz", kMtime - 10);
    write_file(r + "dir.txt", "dir variant");
    write_file(r + "esc.txt", "escaping variant");
    write_file(r + "js/app.js", "console.log(1)");
    write_file(r + "blog/index.html", "<h1>blog</h1>");
    write_file(r + ".git/config", "[core]");
    write_file(r + ".env", "SECRET=1");
    write_file(r + ".well-known/acme", "token");
    write_file(r + "sub/.hidden", "h");
    write_file(r + "a b.txt", "space");
    write_file(r + "100%.txt", "percent");
    write_file(r + "UPPER.PNG", "png");
    write_file(r + "future.txt", "f", kNow + 86400);
    data_.resize(1000);
    for (size_t i = 0; i < data_.size(); ++i)
      data_[i] = static_cast<char>('a' + i % 26);
    write_file(r + "data.bin", data_);
    fs::create_symlink("app.css", r + "link_inside");
    fs::create_symlink("js", r + "dirlink");
    fs::create_symlink(r + "app.css", r + "link_abs_inside");
    fs::create_symlink("/etc/passwd", r + "link_passwd");
    fs::create_symlink(base_ + "/outside", r + "link_outside_dir");
    fs::create_symlink("../outside/secret.txt", r + "link_up");
    fs::create_symlink("/proc/self/root/etc/passwd", r + "link_proc");
    fs::create_symlink("../outside/secret.txt", r + "esc.txt.gz");
    ASSERT_EQ(::mkfifo((r + "fifo").c_str(), 0644), 0);
    sock_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(sock_, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    const std::string sock_path = r + "sock";
    ASSERT_LT(sock_path.size(), sizeof addr.sun_path);
    std::memcpy(addr.sun_path, sock_path.c_str(), sock_path.size() + 1);
    ASSERT_EQ(::bind(sock_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  }
  void TearDown() override {
    if (sock_ >= 0) ::close(sock_);
    std::error_code ec;
    fs::remove_all(base_, ec);
  }

  StaticRoot open_root(StaticOptions o = {}) {
    std::string error;
    auto root = StaticRoot::open(root_, std::move(o), error);
    EXPECT_TRUE(root) << error;
    return std::move(*root);
  }

  StaticAnswer get(const StaticRoot& root, std::string_view path, http::ConditionalHeaders c = {},
                   http::Method m = http::Method::Get, std::span<const Encoding> enc = {},
                   int64_t now = kNow) {
    StaticRequest req;
    req.method = m;
    req.path = path;
    req.conditions = c;
    req.encodings = enc;
    req.now = now;
    return root.serve(req);
  }

  std::string base_, root_, data_;
  int sock_ = -1;
};

TEST_F(StaticFilesTest, RootOpenErrors) {
  std::string error;
  EXPECT_FALSE(StaticRoot::open(base_ + "/missing", {}, error));
  EXPECT_NE(error.find(base_ + "/missing"), std::string::npos) << error;
  EXPECT_NE(error.find("No such file"), std::string::npos) << error;
  EXPECT_FALSE(StaticRoot::open(root_ + "/app.css", {}, error));
  EXPECT_NE(error.find("Not a directory"), std::string::npos) << error;
  for (const char* bad : {"../index.html", "a/b", ".index"}) {
    EXPECT_FALSE(StaticRoot::open(root_, {.index = bad}, error)) << bad;
    EXPECT_NE(error.find("index"), std::string::npos) << error;
  }
  EXPECT_TRUE(StaticRoot::open(root_, {.index = ""}, error));
}

struct PathCase {
  std::string path;
  uint16_t status;
  StaticFailure failure;
};

// edge.md "Static files": never outside root; hidden files, encoded dots and slashes, NUL → 404.
TEST_F(StaticFilesTest, TraversalTable) {
  const StaticRoot root = open_root();
  using F = StaticFailure;
  const std::vector<PathCase> cases = {
      {"/../outside/secret.txt", 404, F::BadPath},
      {"/js/../../outside/secret.txt", 404, F::BadPath},
      {"/js/../app.css", 404, F::BadPath},  // rejected, not normalized away
      {"/%2e%2e/outside/secret.txt", 404, F::BadPath},
      {"/%2E%2E%2Foutside%2Fsecret.txt", 404, F::BadPath},
      {"/..%2foutside/secret.txt", 404, F::BadPath},
      {"/.%2e/outside/secret.txt", 404, F::BadPath},
      {"/js%2fapp.js", 404, F::BadPath},
      {"/js%2Fapp.js", 404, F::BadPath},
      {"/app.css%00", 404, F::BadPath},
      {std::string("/app.css\0.txt", 13), 404, F::BadPath},
      {"/js\\app.js", 404, F::BadPath},
      {"/js%5capp.js", 404, F::BadPath},
      {"/..\\app.css", 404, F::BadPath},
      {"/./app.css", 404, F::BadPath},
      {"/js/./app.js", 404, F::BadPath},
      {"/%2e/app.css", 404, F::BadPath},
      {"/js/.", 404, F::BadPath},
      {"/%zz", 404, F::BadPath},
      {"/app.css%2", 404, F::BadPath},
      {"/%", 404, F::BadPath},
      {"app.css", 404, F::BadPath},
      {"", 404, F::BadPath},
      {"/" + std::string(kMaxStaticPath, 'a'), 404, F::TooLong},
      {"/.git/config", 404, F::Hidden},
      {"/.git", 404, F::Hidden},
      {"/.env", 404, F::Hidden},
      {"/%2eenv", 404, F::Hidden},
      {"/.well-known/acme", 404, F::Hidden},
      {"/sub/.hidden", 404, F::Hidden},
      {"/link_passwd", 404, F::Escapes},
      {"/link_outside_dir/secret.txt", 404, F::Escapes},
      {"/link_up", 404, F::Escapes},
      {"/link_abs_inside", 404, F::Escapes},  // absolute symlinks never resolve beneath
      {"/link_proc", 404, F::Escapes},
      {"/docs", 404, F::NotFound},  // no index, no listing
      {"/docs/", 404, F::NotFound},
      {"/fifo", 404, F::NotRegular},
      {"/sock", 404, F::NotRegular},
      {"/missing.txt", 404, F::NotFound},
      {"/app.css/x", 404, F::NotFound},
      {"/" + std::string(300, 'x'), 404, F::NotFound},  // ENAMETOOLONG
      {"//app.css", 200, F::None},
      {"/js//app.js", 200, F::None},
      {"/link_inside", 200, F::None},
      {"/dirlink/app.js", 200, F::None},
      {"/", 200, F::None},
      {"/blog", 200, F::None},
      {"/blog/", 200, F::None},
      {"/a%20b.txt", 200, F::None},
      {"/100%25.txt", 200, F::None},
      {"/%61pp.css", 200, F::None},
  };
  ::alarm(10);  // a FIFO that blocked the open would hang the test: fail it instead
  for (const PathCase& c : cases) {
    const StaticAnswer a = get(root, c.path);
    EXPECT_EQ(a.status, c.status) << c.path;
    EXPECT_EQ(a.failure, c.failure) << c.path << ": " << to_string(a.failure);
    if (c.status != 200) {
      EXPECT_FALSE(a.fd) << c.path;
      EXPECT_TRUE(a.fields.empty()) << c.path;
    }
  }
  ::alarm(0);
}

TEST_F(StaticFilesTest, IndexAndResolve) {
  const StaticRoot root = open_root();
  StaticAnswer a = get(root, "/");
  EXPECT_EQ(read_range(a), "<h1>home</h1>");
  EXPECT_EQ(a.field("Content-Type"), "text/html; charset=utf-8");
  a = get(root, "/blog/");
  EXPECT_EQ(read_range(a), "<h1>blog</h1>");
  const OpenedFile f = root.resolve("/blog", "");
  EXPECT_EQ(f.rel_path, "blog/index.html");
  // An index that is a directory itself is not followed further.
  const StaticRoot odd = open_root({.index = "js"});
  EXPECT_EQ(get(odd, "/").status, 404);
  const StaticRoot none = open_root({.index = ""});
  EXPECT_EQ(get(none, "/blog/").failure, StaticFailure::NotRegular);
}

TEST_F(StaticFilesTest, Forbidden) {
  if (::geteuid() == 0) GTEST_SKIP() << "root reads any file";
  ::chmod((root_ + "/app.css").c_str(), 0);
  const StaticRoot root = open_root();
  const StaticAnswer a = get(root, "/app.css");
  EXPECT_EQ(a.status, 403);
  EXPECT_EQ(a.failure, StaticFailure::Forbidden);
}

TEST(StaticPath, StripPrefixOnSegmentBoundary) {
  std::string out;
  EXPECT_EQ(decode_static_path("/assets/app.css", "/assets", out), StaticFailure::None);
  EXPECT_EQ(out, "app.css");
  EXPECT_EQ(decode_static_path("/assets/app.css", "/assets/", out), StaticFailure::None);
  EXPECT_EQ(out, "app.css");
  EXPECT_EQ(decode_static_path("/assets", "/assets", out), StaticFailure::None);
  EXPECT_EQ(out, "");
  EXPECT_EQ(decode_static_path("/assets/", "/assets", out), StaticFailure::None);
  EXPECT_EQ(out, "");
  EXPECT_EQ(decode_static_path("/assetsX/app.css", "/assets", out), StaticFailure::OutsidePrefix);
  EXPECT_EQ(decode_static_path("/other/app.css", "/assets", out), StaticFailure::OutsidePrefix);
  EXPECT_EQ(decode_static_path("/%61ssets/app.css", "/assets", out), StaticFailure::OutsidePrefix);
  EXPECT_EQ(decode_static_path("/assets%2fapp.css", "/assets", out), StaticFailure::OutsidePrefix);
  EXPECT_EQ(decode_static_path("/assets/../app.css", "/assets", out), StaticFailure::BadPath);
  EXPECT_EQ(decode_static_path("/a//b/%63", "/", out), StaticFailure::None);
  EXPECT_EQ(out, "a/b/c");
  EXPECT_EQ(decode_static_path("/a%252e%252e", "", out), StaticFailure::None);
  EXPECT_EQ(out, "a%2e%2e");  // decoded once only
}

TEST_F(StaticFilesTest, StripPrefixServes) {
  const StaticRoot root = open_root();
  StaticRequest req;
  req.path = "/assets/app.css";
  req.strip_prefix = "/assets";
  req.now = kNow;
  EXPECT_EQ(root.serve(req).status, 200);
  req.path = "/assets";
  EXPECT_EQ(read_range(root.serve(req)), "<h1>home</h1>");
  req.path = "/assetsy/app.css";
  EXPECT_EQ(root.serve(req).failure, StaticFailure::OutsidePrefix);
}

TEST(StaticMime, Table) {
  EXPECT_EQ(mime_type("a.html"), "text/html; charset=utf-8");
  EXPECT_EQ(mime_type("a.HTM"), "text/html; charset=utf-8");
  EXPECT_EQ(mime_type("dir.d/app.CSS"), "text/css; charset=utf-8");
  EXPECT_EQ(mime_type("a.js"), "text/javascript; charset=utf-8");
  EXPECT_EQ(mime_type("a.mjs"), "text/javascript; charset=utf-8");
  EXPECT_EQ(mime_type("a.json"), "application/json");
  EXPECT_EQ(mime_type("a.js.map"), "application/json");
  EXPECT_EQ(mime_type("a.txt"), "text/plain; charset=utf-8");
  EXPECT_EQ(mime_type("a.svg"), "image/svg+xml");
  EXPECT_EQ(mime_type("a.Png"), "image/png");
  EXPECT_EQ(mime_type("a.jpeg"), "image/jpeg");
  EXPECT_EQ(mime_type("a.woff2"), "font/woff2");
  EXPECT_EQ(mime_type("a.wasm"), "application/wasm");
  EXPECT_EQ(mime_type("a.tar.gz"), "application/gzip");
  EXPECT_EQ(mime_type("a.yaml"), "application/yaml");
  EXPECT_EQ(mime_type("a.webmanifest"), "application/manifest+json");
  EXPECT_EQ(mime_type("a.md"), "text/markdown; charset=utf-8");
  for (const char* unknown : {"README", "a.", "a.xyz", "a.htmlx", "dir.html/file", "x.html/",
                              "a.verylongextensionname", ""}) {
    EXPECT_EQ(mime_type(unknown), "application/octet-stream") << unknown;
  }
}

TEST_F(StaticFilesTest, HeadersOf200) {
  const StaticRoot root = open_root();
  const StaticAnswer a = get(root, "/app.css");
  ASSERT_EQ(a.status, 200);
  EXPECT_EQ(a.field("Content-Type"), "text/css; charset=utf-8");
  EXPECT_EQ(a.field("Content-Length"), "15");
  EXPECT_EQ(a.field("Last-Modified"), "Tue, 14 Nov 2023 22:13:20 GMT");
  EXPECT_EQ(a.field("Accept-Ranges"), "bytes");
  EXPECT_EQ(a.field("Vary"), "");
  EXPECT_EQ(a.field("Content-Encoding"), "");
  EXPECT_EQ(a.offset, 0u);
  EXPECT_EQ(a.length, 15u);
  EXPECT_EQ(read_range(a), "body{color:red}");
  EXPECT_EQ(get(root, "/UPPER.PNG").field("Content-Type"), "image/png");

  // HEAD: the GET's fields, no body.
  const StaticAnswer h = get(root, "/app.css", {}, http::Method::Head);
  EXPECT_EQ(h.status, 200);
  EXPECT_EQ(h.fields.size(), a.fields.size());
  EXPECT_EQ(h.field("Content-Length"), "15");
  EXPECT_EQ(h.content_length, 15u);
  EXPECT_EQ(h.field("ETag"), a.field("ETag"));
  EXPECT_FALSE(h.fd);
  EXPECT_EQ(h.length, 0u);
}

// RFC 9110 8.8.2.1: a Last-Modified in the future is replaced by the Date.
TEST_F(StaticFilesTest, LastModifiedClampedToNow) {
  const StaticRoot root = open_root();
  EXPECT_EQ(get(root, "/future.txt").field("Last-Modified"), date(kNow));
}

TEST_F(StaticFilesTest, MethodNotAllowed) {
  const StaticRoot root = open_root();
  for (auto m : {http::Method::Post, http::Method::Put, http::Method::Delete, http::Method::Options,
                 http::Method::Patch}) {
    const StaticAnswer a = get(root, "/app.css", {}, m);
    EXPECT_EQ(a.status, 405);
    EXPECT_EQ(a.field("Allow"), "GET, HEAD");
    EXPECT_FALSE(a.fd);
  }
  EXPECT_EQ(get(root, "/missing", {}, http::Method::Post).status, 405);
}

TEST_F(StaticFilesTest, EtagStableAndChanges) {
  const StaticRoot root = open_root();
  const std::string e1(get(root, "/app.css").field("ETag"));
  EXPECT_EQ(get(root, "/app.css").field("ETag"), e1);
  struct stat st {};
  ASSERT_EQ(::stat((root_ + "/app.css").c_str(), &st), 0);
  EXPECT_EQ(e1, make_etag(st));
  ASSERT_TRUE(http::parse_entity_tag(e1));
  EXPECT_FALSE(http::parse_entity_tag(e1)->weak);
  // Same size, a new mtime a nanosecond later: a new ETag.
  write_file(root_ + "/app.css", "body{color:blu}", kMtime, 1);
  const std::string e2(get(root, "/app.css").field("ETag"));
  EXPECT_NE(e1, e2);
  // Same mtime, another size.
  write_file(root_ + "/app.css", "body{}", kMtime, 1);
  EXPECT_NE(get(root, "/app.css").field("ETag"), e2);
  // Replaced by rename (another inode), same size and mtime.
  write_file(root_ + "/app2.css", "body{}", kMtime, 1);
  const std::string e3(get(root, "/app.css").field("ETag"));
  fs::rename(root_ + "/app2.css", root_ + "/app.css");
  EXPECT_NE(get(root, "/app.css").field("ETag"), e3);
}

TEST(OwnedFdTest, ReleaseAndMove) {
  OwnedFd a(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(a);
  OwnedFd b(std::move(a));
  EXPECT_FALSE(a);
  const int raw = b.release();
  EXPECT_FALSE(b);
  EXPECT_EQ(::fcntl(raw, F_GETFD), FD_CLOEXEC);
  ::close(raw);
}

TEST(StaticEtag, Format) {
  struct stat st {};
  st.st_ino = 0x2a;
  st.st_mtim = {1, 5};
  st.st_size = 255;
  EXPECT_EQ(make_etag(st), "\"2a-3b9aca05-ff\"");
  EXPECT_EQ(make_etag(st, "-br"), "\"2a-3b9aca05-ff-br\"");
}

// RFC 9110 13.1.2 / 13.1.3 / 15.4.5: 304 carries the validators, no body, no framing fields.
TEST_F(StaticFilesTest, NotModified) {
  const StaticRoot root = open_root();
  const std::string etag(get(root, "/app.css").field("ETag"));
  const std::string listed = "\"x\", W/" + etag, lm = date(kMtime), later = date(kMtime + 5);
  for (const http::ConditionalHeaders& c : {
           http::ConditionalHeaders{.if_none_match = etag},
           http::ConditionalHeaders{.if_none_match = listed},
           http::ConditionalHeaders{.if_none_match = "*"},
           http::ConditionalHeaders{.if_modified_since = lm},
           http::ConditionalHeaders{.if_modified_since = later},
       }) {
    for (auto m : {http::Method::Get, http::Method::Head}) {
      const StaticAnswer a = get(root, "/app.css", c, m);
      EXPECT_EQ(a.status, 304);
      EXPECT_EQ(a.field("ETag"), etag);
      EXPECT_EQ(a.field("Last-Modified"), date(kMtime));
      EXPECT_EQ(a.field("Content-Length"), "");
      EXPECT_EQ(a.field("Content-Type"), "");
      EXPECT_FALSE(a.fd);
      EXPECT_EQ(a.length, 0u);
    }
  }
  EXPECT_EQ(get(root, "/app.css", {.if_modified_since = date(kMtime - 1)}).status, 200);
  EXPECT_EQ(get(root, "/app.css", {.if_none_match = "\"other\""}).status, 200);
  // If-None-Match present: If-Modified-Since ignored (13.1.3).
  EXPECT_EQ(get(root, "/app.css", {.if_none_match = "\"other\"", .if_modified_since = date(kMtime)})
                .status,
            200);
}

// RFC 9110 13.1.1 / 13.1.4: 412.
TEST_F(StaticFilesTest, PreconditionFailed) {
  const StaticRoot root = open_root();
  const std::string etag(get(root, "/app.css").field("ETag"));
  EXPECT_EQ(get(root, "/app.css", {.if_match = etag}).status, 200);
  EXPECT_EQ(get(root, "/app.css", {.if_match = "*"}).status, 200);
  StaticAnswer a = get(root, "/app.css", {.if_match = "\"other\""});
  EXPECT_EQ(a.status, 412);
  EXPECT_FALSE(a.fd);
  EXPECT_EQ(get(root, "/app.css", {.if_match = "W/" + etag}).status, 412);
  EXPECT_EQ(get(root, "/app.css", {.if_unmodified_since = date(kMtime - 1)}).status, 412);
  EXPECT_EQ(get(root, "/app.css", {.if_unmodified_since = date(kMtime)}).status, 200);
  EXPECT_EQ(get(root, "/app.css", {.if_unmodified_since = "garbage"}).status, 200);
}

// RFC 9110 14.2 / 15.3.7: one range → 206 with Content-Range.
TEST_F(StaticFilesTest, Ranges) {
  const StaticRoot root = open_root();
  StaticAnswer a = get(root, "/data.bin", {.range = "bytes=0-9"});
  EXPECT_EQ(a.status, 206);
  EXPECT_EQ(a.field("Content-Range"), "bytes 0-9/1000");
  EXPECT_EQ(a.field("Content-Length"), "10");
  EXPECT_EQ(a.content_length, 10u);
  EXPECT_EQ(a.offset, 0u);
  EXPECT_EQ(a.length, 10u);
  EXPECT_EQ(read_range(a), data_.substr(0, 10));

  a = get(root, "/data.bin", {.range = "bytes=-10"});
  EXPECT_EQ(a.status, 206);
  EXPECT_EQ(a.field("Content-Range"), "bytes 990-999/1000");
  EXPECT_EQ(read_range(a), data_.substr(990));

  a = get(root, "/data.bin", {.range = "bytes=995-5000"});
  EXPECT_EQ(a.field("Content-Range"), "bytes 995-999/1000");
  EXPECT_EQ(read_range(a), data_.substr(995));

  // 416 with the complete length.
  a = get(root, "/data.bin", {.range = "bytes=1000-"});
  EXPECT_EQ(a.status, 416);
  EXPECT_EQ(a.field("Content-Range"), "bytes */1000");
  EXPECT_FALSE(a.fd);

  // Several ranges, other units, garbage → the whole file (edge.md).
  for (const char* r : {"bytes=0-1,5-6", "items=0-1", "bytes=5-1", "bytes=x"}) {
    a = get(root, "/data.bin", {.range = r});
    EXPECT_EQ(a.status, 200) << r;
    EXPECT_EQ(a.length, 1000u) << r;
    EXPECT_EQ(a.field("Content-Range"), "") << r;
  }
  // HEAD ignores Range (14.2: GET only).
  a = get(root, "/data.bin", {.range = "bytes=0-9"}, http::Method::Head);
  EXPECT_EQ(a.status, 200);
  EXPECT_EQ(a.field("Content-Length"), "1000");
  // 304 wins over Range (13.2.2 order).
  const std::string etag(a.field("ETag"));
  EXPECT_EQ(get(root, "/data.bin", {.if_none_match = etag, .range = "bytes=0-9"}).status, 304);
}

// RFC 9110 13.1.5 and 8.8.2.2.
TEST_F(StaticFilesTest, IfRange) {
  const StaticRoot root = open_root();
  const std::string etag(get(root, "/data.bin").field("ETag"));
  EXPECT_EQ(get(root, "/data.bin", {.if_range = etag, .range = "bytes=0-9"}).status, 206);
  EXPECT_EQ(get(root, "/data.bin", {.if_range = "\"old\"", .range = "bytes=0-9"}).status, 200);
  EXPECT_EQ(get(root, "/data.bin", {.if_range = "W/" + etag, .range = "bytes=0-9"}).status, 200);
  EXPECT_EQ(get(root, "/data.bin", {.if_range = date(kMtime), .range = "bytes=0-9"}).status, 206);
  EXPECT_EQ(get(root, "/data.bin", {.if_range = date(kMtime + 1), .range = "bytes=0-9"}).status,
            200);
  // Modified within the current second: Last-Modified is weak, the date never matches.
  EXPECT_EQ(get(root, "/data.bin", {.if_range = date(kMtime), .range = "bytes=0-9"},
                http::Method::Get, {}, kMtime)
                .status,
            200);
  // A failing If-Range on an unsatisfiable range: the whole file, not 416.
  EXPECT_EQ(get(root, "/data.bin", {.if_range = "\"old\"", .range = "bytes=5000-"}).status, 200);
}

TEST_F(StaticFilesTest, Precompressed) {
  const StaticRoot root = open_root({.precompressed = true});
  const std::vector<Encoding> all = {Encoding::Zstd, Encoding::Brotli, Encoding::Gzip};
  const std::string plain_etag(get(root, "/app.css").field("ETag"));

  StaticAnswer a = get(root, "/app.css", {}, http::Method::Get, all);
  EXPECT_EQ(a.status, 200);
  EXPECT_EQ(a.encoding, Encoding::Zstd);
  EXPECT_EQ(a.field("Content-Encoding"), "zstd");
  EXPECT_EQ(a.field("Content-Type"), "text/css; charset=utf-8");
  EXPECT_EQ(a.field("Content-Length"), "10");
  EXPECT_EQ(a.field("Vary"), "Accept-Encoding");
  EXPECT_EQ(read_range(a), "ZSTD-BYTES");
  const std::string zst_etag(a.field("ETag"));
  EXPECT_TRUE(zst_etag.ends_with("-zst\"")) << zst_etag;
  EXPECT_NE(zst_etag, plain_etag);

  const std::vector<Encoding> br_gz = {Encoding::Brotli, Encoding::Gzip};
  a = get(root, "/app.css", {}, http::Method::Get, br_gz);
  EXPECT_EQ(a.field("Content-Encoding"), "br");
  EXPECT_EQ(read_range(a), "BROTLI-BYTES");
  EXPECT_TRUE(a.field("ETag").ends_with("-br\""));

  const std::vector<Encoding> gz = {Encoding::Gzip};
  a = get(root, "/app.css", {}, http::Method::Get, gz);
  EXPECT_EQ(a.field("Content-Encoding"), "gzip");
  EXPECT_EQ(read_range(a), "GZIP-BYTES");
  EXPECT_TRUE(a.field("ETag").ends_with("-gz\""));

  // Identity first in the ranking, or nothing acceptable: the original, still with Vary.
  const std::vector<Encoding> id_first = {Encoding::Identity, Encoding::Gzip};
  for (auto enc : {std::span<const Encoding>(id_first), std::span<const Encoding>()}) {
    a = get(root, "/app.css", {}, http::Method::Get, enc);
    EXPECT_EQ(a.encoding, Encoding::Identity);
    EXPECT_EQ(a.field("Content-Encoding"), "");
    EXPECT_EQ(a.field("Vary"), "Accept-Encoding");
    EXPECT_EQ(read_range(a), "body{color:red}");
  }

  // Stale, directory and escaping variants are skipped; a variant without original is 404.
  EXPECT_EQ(get(root, "/stale.txt", {}, http::Method::Get, gz).encoding, Encoding::Identity);
  EXPECT_EQ(read_range(get(root, "/stale.txt", {}, http::Method::Get, gz)), "new text");
  EXPECT_EQ(get(root, "/dir.txt", {}, http::Method::Get, gz).encoding, Encoding::Identity);
  EXPECT_EQ(get(root, "/esc.txt", {}, http::Method::Get, gz).encoding, Encoding::Identity);
  EXPECT_EQ(get(root, "/only.js", {}, http::Method::Get, gz).status, 404);
  // The variant requested by name is a plain gzip file.
  a = get(root, "/app.css.gz", {}, http::Method::Get, gz);
  EXPECT_EQ(a.field("Content-Type"), "application/gzip");
  EXPECT_EQ(a.field("Content-Encoding"), "");

  // Ranges and conditionals apply to the variant's bytes and validators.
  a = get(root, "/app.css", {.range = "bytes=0-5"}, http::Method::Get, br_gz);
  EXPECT_EQ(a.status, 206);
  EXPECT_EQ(a.field("Content-Range"), "bytes 0-5/12");
  EXPECT_EQ(read_range(a), "BROTLI");
  const std::string br_etag(get(root, "/app.css", {}, http::Method::Get, br_gz).field("ETag"));
  a = get(root, "/app.css", {.if_none_match = br_etag}, http::Method::Get, br_gz);
  EXPECT_EQ(a.status, 304);
  EXPECT_EQ(a.field("Vary"), "Accept-Encoding");
  EXPECT_EQ(get(root, "/app.css", {.if_none_match = br_etag}, http::Method::Get, gz).status, 200);
  a = get(root, "/app.css", {.range = "bytes=100-"}, http::Method::Get, br_gz);
  EXPECT_EQ(a.status, 416);
  EXPECT_EQ(a.field("Content-Range"), "bytes */12");

  // Index files get variants too.
  write_file(root_ + "/index.html.br", "BR-INDEX");
  a = get(root, "/", {}, http::Method::Get, br_gz);
  EXPECT_EQ(read_range(a), "BR-INDEX");
  EXPECT_EQ(a.field("Content-Type"), "text/html; charset=utf-8");

  // precompressed off: never a variant, no Vary.
  const StaticRoot plain = open_root();
  a = get(plain, "/app.css", {}, http::Method::Get, all);
  EXPECT_EQ(a.encoding, Encoding::Identity);
  EXPECT_EQ(a.field("Vary"), "");
}

}  // namespace
}  // namespace weir::proxy
