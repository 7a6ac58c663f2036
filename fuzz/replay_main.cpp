// A main() for the fuzz targets without libFuzzer: runs every input named on the command line
// (files, or folders read recursively, in name order) through LLVMFuzzerTestOneInput once, after
// LLVMFuzzerInitialize if the target has one. Built with the sanitizer build, so CTest replays
// each corpus (fuzz.replay.<target>): a crash, a sanitizer report or a failed check fails it.
// Usage: <target>_replay FILE_OR_DIR... (arguments starting with '-' are ignored, as libFuzzer
// flags would be).
#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
extern "C" __attribute__((weak)) int LLVMFuzzerInitialize(int* argc, char*** argv);

namespace fs = std::filesystem;

namespace {

bool collect(const fs::path& p, std::vector<fs::path>& out) {
  std::error_code ec;
  if (fs::is_directory(p, ec)) {
    std::vector<fs::path> found;
    for (auto it = fs::recursive_directory_iterator(p, ec); !ec && it != fs::end(it);
         it.increment(ec)) {
      if (it->is_regular_file(ec)) found.push_back(it->path());
    }
    if (ec) {
      std::fprintf(stderr, "replay: cannot list %s: %s\n", p.c_str(), ec.message().c_str());
      return false;
    }
    std::sort(found.begin(), found.end());
    out.insert(out.end(), found.begin(), found.end());
    return true;
  }
  if (fs::is_regular_file(p, ec)) {
    out.push_back(p);
    return true;
  }
  std::fprintf(stderr, "replay: no such file or folder: %s\n", p.c_str());
  return false;
}

bool read_file(const fs::path& p, std::string& bytes) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return false;
  bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return !in.bad();
}

}  // namespace

int main(int argc, char** argv) {
  if (LLVMFuzzerInitialize) LLVMFuzzerInitialize(&argc, &argv);
  std::vector<fs::path> inputs;
  bool ok = true;
  for (int i = 1; i < argc; ++i) {
    if (argv[i][0] == '-') continue;
    ok &= collect(argv[i], inputs);
  }
  if (!ok) return 2;
  if (inputs.empty()) {
    std::fprintf(stderr, "replay: no inputs (usage: %s FILE_OR_DIR...)\n", argv[0]);
    return 2;
  }
  const auto start = std::chrono::steady_clock::now();
  std::string bytes;
  for (const fs::path& p : inputs) {
    if (!read_file(p, bytes)) {
      std::fprintf(stderr, "replay: cannot read %s\n", p.c_str());
      return 2;
    }
    std::fprintf(stderr, "Running: %s (%zu bytes)\n", p.c_str(), bytes.size());
    // An exact-size heap copy, as libFuzzer passes it: ASan flags a read past its end.
    std::unique_ptr<uint8_t[]> copy(new uint8_t[bytes.size()]);
    if (!bytes.empty()) std::memcpy(copy.get(), bytes.data(), bytes.size());
    const int rc = LLVMFuzzerTestOneInput(copy.get(), bytes.size());
    if (rc != 0) {
      std::fprintf(stderr, "replay: %s: LLVMFuzzerTestOneInput returned %d\n", p.c_str(), rc);
      return 1;
    }
  }
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now() - start)
                      .count();
  std::fprintf(stderr, "replay: %zu inputs ok in %lld ms\n", inputs.size(),
               static_cast<long long>(ms));
  return 0;
}
