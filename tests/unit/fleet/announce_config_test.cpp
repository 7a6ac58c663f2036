// `announce:` (fleet.md) in the config: what it loads to and every error, at its place.
#include <gtest/gtest.h>

#include "../config/loader_test_util.hpp"

namespace weir::config::test {
namespace {

// The announce block starts at line 9 (with_backend's config ends at line 8): its first key
// is at line 10.
std::string announce(std::string_view block) {
  return with_backend(std::string("announce:\n") + std::string(block));
}

TEST(AnnounceConfig, AbsentByDefault) {
  Config c = ok(load(with_backend("")));
  EXPECT_FALSE(c.announce.has_value());
}

TEST(AnnounceConfig, EveryKey) {
  Config c = ok(load(announce(R"(  bird_socket: /run/bird/lb.ctl
  protocols: [vip_web, _vip2]
  when: { backends: [web], min_healthy: 2 }
  withdraw_on_drain: false
)")));
  ASSERT_TRUE(c.announce.has_value());
  const Announce& a = *c.announce;
  EXPECT_EQ(a.bird_socket, "/run/bird/lb.ctl");
  EXPECT_EQ(a.protocols, (std::vector<std::string>{"vip_web", "_vip2"}));
  EXPECT_EQ(a.backends, (std::vector<std::string>{"web"}));
  EXPECT_EQ(a.min_healthy, 2u);
  EXPECT_FALSE(a.withdraw_on_drain);
  EXPECT_EQ(a.pos.line, 9);
}

TEST(AnnounceConfig, Defaults) {
  Config c = ok(load(announce("  protocols: [vip_web]\n  when: { backends: [web] }\n")));
  const Announce& a = *c.announce;
  EXPECT_EQ(a.bird_socket, "/run/bird/bird.ctl");
  EXPECT_EQ(a.min_healthy, 1u);
  EXPECT_TRUE(a.withdraw_on_drain);
}

TEST(AnnounceConfig, RelativeSocketIsRelativeToTheConfigFile) {
  TempDir dir;
  auto path = dir.write("weir.yaml", announce("  bird_socket: bird.ctl\n  protocols: [vip_web]\n"
                                              "  when: { backends: [web] }\n"));
  LoadResult r = load_config_file(path.string());
  ASSERT_TRUE(r.ok()) << ::testing::PrintToString(all_messages(r));
  EXPECT_EQ(r.config->announce->bird_socket, (dir.path() / "bird.ctl").string());
}

TEST(AnnounceConfig, Errors) {
  const std::string when = "  when: { backends: [web] }\n";
  EXPECT_EQ(error(announce("  protocols: [vip_web]\n  when: { backends: [web, nope] }\n")),
            "t.yaml:11:27: unknown backend \"nope\"");
  EXPECT_EQ(error(announce("  protocols: [vip_web]\n  when: { backends: [web, web] }\n")),
            "t.yaml:11:27: backend \"web\" is listed twice");
  EXPECT_EQ(error(announce("  protocols: [vip_web]\n  when: { backends: [] }\n")),
            "t.yaml:11:21: \"backends\" needs at least one backend name");
  EXPECT_EQ(error(announce("  protocols: [vip_web]\n  when: { min_healthy: 1 }\n")),
            "t.yaml:11:9: announce when needs \"backends\"");
  EXPECT_EQ(
      error(announce("  protocols: [vip_web]\n  when: { backends: [web], min_healthy: 0 }\n")),
      "t.yaml:11:41: \"min_healthy\" must be an integer from 1 to 100000, got \"0\"");
  EXPECT_EQ(error(announce("  protocols: [vip_web]\n")), "t.yaml:10:3: announce needs \"when\"");
  EXPECT_EQ(error(announce(when)), "t.yaml:10:3: announce needs \"protocols\"");
  EXPECT_EQ(error(announce("  protocols: []\n" + when)),
            "t.yaml:10:14: \"protocols\" needs at least one BIRD protocol name");
  EXPECT_EQ(error(announce("  protocols: [vip_web, \"vip web\"]\n" + when)),
            "t.yaml:10:24: invalid BIRD protocol name \"vip web\" (a letter or \"_\", then "
            "letters, digits or \"_\"; at most 64)");
  EXPECT_EQ(error(announce("  protocols: [\"vip\\ndisable all\"]\n" + when)).substr(0, 45),
            "t.yaml:10:15: invalid BIRD protocol name \"vip");
  EXPECT_EQ(error(announce("  protocols: [1vip]\n" + when)).substr(0, 40),
            "t.yaml:10:15: invalid BIRD protocol name");
  EXPECT_EQ(error(announce("  protocols: [vip, vip]\n" + when)),
            "t.yaml:10:20: protocol \"vip\" is listed twice");
  EXPECT_EQ(error(announce("  protocols: vip\n" + when)).substr(0, 14), "t.yaml:10:14: ");
  EXPECT_EQ(error(announce("  bird_socket: \"\"\n  protocols: [vip]\n" + when)),
            "t.yaml:10:16: \"bird_socket\" must not be empty");
  EXPECT_EQ(
      error(announce("  bird_socket: /" + std::string(120, 'x') + "\n  protocols: [vip]\n" + when))
          .substr(0, 40),
      "t.yaml:10:16: \"bird_socket\" \"/xxxxxxxxxx");
  EXPECT_EQ(error(announce("  protocols: [vip]\n" + when + "  withdraw_on_drain: maybe\n")),
            "t.yaml:12:22: \"withdraw_on_drain\" must be true or false, got \"maybe\"");
  EXPECT_EQ(error(announce("  protocols: [vip]\n" + when + "  birdsocket: /x\n")).substr(0, 40),
            "t.yaml:12:3: unknown key \"birdsocket\" in");
  EXPECT_EQ(error(with_backend("announce: yes\n")).substr(0, 13), "t.yaml:9:11: ");
}

}  // namespace
}  // namespace weir::config::test
