#pragma once
// A client of BIRD's control socket (the protocol birdc speaks): a Unix stream socket; BIRD greets
// with "0001 BIRD x.y ready.", then answers each command line with reply lines. A line is a
// 4-digit code and '-' (more follows) or ' ' (the last line), then text; a line starting with ' '
// continues the previous code, one starting with '+' is an asynchronous message. Codes 0000-0999
// say done, 1000-7999 carry data, 8000-9999 are errors. Blocking calls with deadlines on a
// non-blocking socket: meant for a thread of its own (the Announcer's), never a worker.
#include <chrono>
#include <string>
#include <string_view>
#include <vector>

namespace weir::fleet {

// One line of a reply, as BIRD sent it (without the newline).
struct BirdLine {
  enum class Kind { Code, Continuation, Async, Bad };
  Kind kind = Kind::Bad;
  int code = -1;      // Code lines
  bool last = false;  // a Code line ending the reply (' ' after the code)
  std::string_view text;
};
BirdLine parse_bird_line(std::string_view line);

struct BirdReply {
  int code = -1;                   // the last line's code
  std::vector<std::string> lines;  // every line's text, codes and continuation marks dropped
  std::string error;               // the first error line ("9001 syntax error, ..."), "" if none
  bool ok() const { return error.empty(); }
};

class BirdClient {
 public:
  BirdClient() = default;
  ~BirdClient();
  BirdClient(const BirdClient&) = delete;
  BirdClient& operator=(const BirdClient&) = delete;

  // Connects to the control socket at `path` and reads BIRD's greeting within `timeout`.
  // "" when connected, else why not (the connection is closed).
  std::string connect(const std::string& path, std::chrono::milliseconds timeout);
  bool connected() const { return fd_ >= 0; }
  // Sends one command line and reads its whole reply within `timeout`. On a transport failure
  // (BIRD gone, a timeout, a malformed or oversized reply) returns false with `why` and closes
  // the connection; a reply with an error code is a successful exchange (see BirdReply::ok).
  bool command(std::string_view line, std::chrono::milliseconds timeout, BirdReply& reply,
               std::string& why);
  // Without waiting: false (and closed, with `why`) when BIRD ended the connection; drops
  // asynchronous messages that arrived meanwhile.
  bool check_alive(std::string& why);
  void close();

  static constexpr size_t kMaxReply = 64 * 1024;  // bytes of one reply (enable/disable: ~40)

 private:
  using Clock = std::chrono::steady_clock;
  // The next complete line of input (waits for it until `deadline`); false with `why`.
  bool read_line(Clock::time_point deadline, std::string& line, std::string& why);
  bool fail(std::string& why, std::string text);

  int fd_ = -1;
  std::string in_;  // received, not yet consumed
  size_t reply_bytes_ = 0;
};

}  // namespace weir::fleet
