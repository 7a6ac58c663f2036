#include "fleet/bird_client.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "fake_bird.hpp"

namespace weir::fleet {
namespace {

using namespace std::chrono_literals;
using test::FakeBird;
using test::TempDir;

TEST(BirdLine, ParsesCodeContinuationAndAsyncLines) {
  BirdLine l = parse_bird_line("0011-vip_web: enabled");
  EXPECT_EQ(l.kind, BirdLine::Kind::Code);
  EXPECT_EQ(l.code, 11);
  EXPECT_FALSE(l.last);
  EXPECT_EQ(l.text, "vip_web: enabled");
  l = parse_bird_line("0000 ");
  EXPECT_EQ(l.kind, BirdLine::Kind::Code);
  EXPECT_EQ(l.code, 0);
  EXPECT_TRUE(l.last);
  EXPECT_EQ(l.text, "");
  l = parse_bird_line("9001 syntax error");
  EXPECT_EQ(l.code, 9001);
  EXPECT_TRUE(l.last);
  l = parse_bird_line(" Hostname is vm");
  EXPECT_EQ(l.kind, BirdLine::Kind::Continuation);
  EXPECT_EQ(l.text, "Hostname is vm");
  l = parse_bird_line("+Reconfigured");
  EXPECT_EQ(l.kind, BirdLine::Kind::Async);
  for (std::string_view bad : {"", "0011", "001x-text", "0011:text", "hello world", "12345 x"})
    EXPECT_EQ(parse_bird_line(bad).kind, BirdLine::Kind::Bad) << bad;
}

TEST(BirdClient, EnableAndDisableAgainstBirdsAnswers) {
  TempDir dir;
  FakeBird bird(dir.file("bird.ctl"), {"vip_web"});
  bird.start();
  BirdClient c;
  ASSERT_EQ(c.connect(dir.file("bird.ctl"), 1s), "");
  BirdReply r;
  std::string why;
  ASSERT_TRUE(c.command("enable vip_web", 1s, r, why)) << why;
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.code, 0);
  ASSERT_EQ(r.lines.size(), 2u);
  EXPECT_EQ(r.lines[0], "vip_web: enabled");
  EXPECT_TRUE(bird.enabled("vip_web"));
  ASSERT_TRUE(c.command("enable vip_web", 1s, r, why)) << why;
  EXPECT_EQ(r.lines[0], "vip_web: already enabled");
  ASSERT_TRUE(c.command("disable vip_web", 1s, r, why)) << why;
  EXPECT_TRUE(r.ok());
  EXPECT_FALSE(bird.enabled("vip_web"));
  EXPECT_EQ(bird.commands(),
            (std::vector<std::string>{"enable vip_web", "enable vip_web", "disable vip_web"}));
}

TEST(BirdClient, MultiLineRepliesWithContinuationsAsyncLinesAndSplitWrites) {
  TempDir dir;
  FakeBird bird(dir.file("bird.ctl"), {});
  bird.set_answer([](const std::string&) {
    return std::string(
        "+async before\n1000-BIRD 2.0.12\n1011-Router ID is 192.0.2.1\n Hostname is vm\n"
        "+async between\n Current server time is now\n0013 Daemon is up and running\n");
  });
  bird.start();
  BirdClient c;
  ASSERT_EQ(c.connect(dir.file("bird.ctl"), 1s), "");
  BirdReply r;
  std::string why;
  ASSERT_TRUE(c.command("show status", 1s, r, why)) << why;
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.code, 13);
  EXPECT_EQ(r.lines,
            (std::vector<std::string>{"BIRD 2.0.12", "Router ID is 192.0.2.1", "Hostname is vm",
                                      "Current server time is now", "Daemon is up and running"}));
  // The connection is still in step: the next command gets its own reply.
  ASSERT_TRUE(c.command("show status", 1s, r, why)) << why;
  EXPECT_EQ(r.code, 13);
}

TEST(BirdClient, ErrorRepliesAreAnswersNotTransportFailures) {
  TempDir dir;
  FakeBird bird(dir.file("bird.ctl"), {"vip_web"});
  bird.start();
  BirdClient c;
  ASSERT_EQ(c.connect(dir.file("bird.ctl"), 1s), "");
  BirdReply r;
  std::string why;
  ASSERT_TRUE(c.command("enable nosuch", 1s, r, why)) << why;
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.code, 9001);
  EXPECT_EQ(r.error.substr(0, 22), "9001 syntax error, une");
  EXPECT_TRUE(c.connected());
  // An error inside a multi-line reply counts too.
  bird.set_answer([](const std::string&) { return std::string("8007-Access denied\n0000 \n"); });
  ASSERT_TRUE(c.command("enable vip_web", 1s, r, why)) << why;
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.error, "8007-Access denied");
}

TEST(BirdClient, NoSocketAndNotBird) {
  TempDir dir;
  BirdClient c;
  EXPECT_EQ(c.connect(dir.file("none.ctl"), 1s), "No such file or directory");
  EXPECT_FALSE(c.connected());
  FakeBird other(dir.file("other.ctl"), {});
  other.set_greeting("220 smtp.example ESMTP\n");
  other.start();
  std::string why = c.connect(dir.file("other.ctl"), 1s);
  EXPECT_NE(why.find("not a BIRD control socket"), std::string::npos) << why;
  EXPECT_FALSE(c.connected());
}

TEST(BirdClient, BirdGoingAway) {
  TempDir dir;
  FakeBird bird(dir.file("bird.ctl"), {"vip_web"});
  bird.start();
  BirdClient c;
  ASSERT_EQ(c.connect(dir.file("bird.ctl"), 1s), "");
  std::string why;
  EXPECT_TRUE(c.check_alive(why));
  bird.stop();
  // The close reaches the client: check_alive says so without waiting.
  bool gone = false;
  for (int i = 0; i < 100 && !gone; ++i) {
    gone = !c.check_alive(why);
    if (!gone) std::this_thread::sleep_for(10ms);
  }
  EXPECT_TRUE(gone);
  EXPECT_EQ(why, "BIRD closed the connection");
  EXPECT_FALSE(c.connected());
  // Its socket file is still there, nobody listens: refused.
  EXPECT_EQ(c.connect(dir.file("bird.ctl"), 1s), "Connection refused");
}

TEST(BirdClient, ClosedMidCommandAndSilentBird) {
  TempDir dir;
  FakeBird bird(dir.file("bird.ctl"), {"vip_web"});
  bird.set_answer([](const std::string& line) {
    if (line == "close") return std::string("<close>");
    if (line == "half") return std::string("0011-vip_web: enabled\n");  // never ends
    return std::string();                                               // silent
  });
  bird.start();
  BirdClient c;
  BirdReply r;
  std::string why;
  ASSERT_EQ(c.connect(dir.file("bird.ctl"), 1s), "");
  EXPECT_FALSE(c.command("close", 1s, r, why));
  EXPECT_EQ(why, "BIRD closed the connection");
  EXPECT_FALSE(c.connected());
  ASSERT_EQ(c.connect(dir.file("bird.ctl"), 1s), "");
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(c.command("enable vip_web", 200ms, r, why));
  EXPECT_EQ(why, "timed out");
  auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(took, 190ms);
  EXPECT_LT(took, 1s);
  ASSERT_EQ(c.connect(dir.file("bird.ctl"), 1s), "");
  EXPECT_FALSE(c.command("half", 200ms, r, why));
  EXPECT_EQ(why, "timed out");
}

TEST(BirdClient, OversizedAndMalformedReplies) {
  TempDir dir;
  FakeBird bird(dir.file("bird.ctl"), {});
  bird.set_answer([](const std::string& line) {
    if (line == "big") {
      std::string out;
      while (out.size() <= BirdClient::kMaxReply)
        out += "1002-" + std::string(100, 'x') + "\n";
      return out + "0000 \n";
    }
    return std::string("garbage\n");
  });
  bird.start();
  BirdClient c;
  BirdReply r;
  std::string why;
  ASSERT_EQ(c.connect(dir.file("bird.ctl"), 1s), "");
  EXPECT_FALSE(c.command("big", 1s, r, why));
  EXPECT_EQ(why, "reply too long");
  ASSERT_EQ(c.connect(dir.file("bird.ctl"), 1s), "");
  EXPECT_FALSE(c.command("x", 1s, r, why));
  EXPECT_EQ(why, "malformed reply line \"garbage\"");
}

}  // namespace
}  // namespace weir::fleet
