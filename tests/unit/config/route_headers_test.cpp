// `request_headers:` / `response_headers:` of a route.
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "config/loader.hpp"
#include "loader_test_util.hpp"

namespace weir::config {
namespace {

using namespace weir::config::test;  // NOLINT(google-build-using-namespace)
using Pairs = std::vector<std::pair<std::string, std::string>>;
using Names = std::vector<std::string>;

// A config with one route whose keys after `match` are `rules`, starting at line 6 (indented by
// 8 spaces to sit in the route), then a catch-all `backend:` shorthand.
std::string with_rules(std::string_view rules) {
  return yaml(R"(
listeners:
  - name: web
    listen: 127.0.0.1:8080
    routes:
      - match: {path_prefix: /api/}
)") + yaml(rules) +
         yaml(R"(
        backend: web
    backend: web
backends:
  - name: web
    servers:
      - address: 127.0.0.1:9001
)");
}

// The route with the rules.
Route route_of(std::string_view rules) {
  Config c = ok(load(with_rules(rules)));
  if (c.listeners.empty() || c.listeners[0].routes.empty()) return Route{};
  return c.listeners[0].routes[0];
}

TEST(RouteHeaders, ContractExample) {
  const Config& c = ok(load(R"(
listeners:
  - name: web
    listen: 127.0.0.1:8080
    routes:
      - match: { path_prefix: /api/ }
        request_headers:                # applied in the order remove, set, add
          remove: [X-Debug]
          set: { X-Env: prod }          # replaces every field of that name
          add: { Via: "1.1 weir" }      # appends a field
        response_headers:
          remove: [X-Internal]
          set: { Cache-Control: no-store }
        backend: api
backends:
  - name: api
    servers:
      - address: 127.0.0.1:9001
)"));
  ASSERT_EQ(c.listeners.size(), 1u);
  ASSERT_EQ(c.listeners[0].routes.size(), 1u);
  const Route& r = c.listeners[0].routes[0];
  EXPECT_EQ(r.match.path_prefix, "/api/");
  EXPECT_EQ(r.backend, "api");
  EXPECT_EQ(r.request_headers.remove, Names{"X-Debug"});
  EXPECT_EQ(r.request_headers.set, (Pairs{{"X-Env", "prod"}}));
  EXPECT_EQ(r.request_headers.add, (Pairs{{"Via", "1.1 weir"}}));
  EXPECT_EQ(r.response_headers.remove, Names{"X-Internal"});
  EXPECT_EQ(r.response_headers.set, (Pairs{{"Cache-Control", "no-store"}}));
  EXPECT_TRUE(r.response_headers.add.empty());
  EXPECT_FALSE(r.request_headers.empty());
  EXPECT_FALSE(r.response_headers.empty());
}

TEST(RouteHeaders, FileOrderAndSpellingKept) {
  Route r = route_of(R"(
        request_headers:
          remove:
            - x-debug
            - X-Trace-Id
            - Accept-Encoding
          set:
            X-Env: prod
            x-request-source: edge
            X-Env-Remove-Then-Set: "1"
          add:
            Via: 1.1 weir
            X-B: "2"
            X-A: "1"
            via: "1.1 other"
        response_headers:
          remove: [Server, X-Debug]
          add: {Set-Cookie: a=1, set-cookie: b=2, X-Empty: "", X-Tab: "a	b", X-Num: 1.50}
)");
  EXPECT_EQ(r.request_headers.remove, (Names{"x-debug", "X-Trace-Id", "Accept-Encoding"}));
  EXPECT_EQ(
      r.request_headers.set,
      (Pairs{{"X-Env", "prod"}, {"x-request-source", "edge"}, {"X-Env-Remove-Then-Set", "1"}}));
  EXPECT_EQ(r.request_headers.add,
            (Pairs{{"Via", "1.1 weir"}, {"X-B", "2"}, {"X-A", "1"}, {"via", "1.1 other"}}));
  EXPECT_EQ(r.response_headers.remove, (Names{"Server", "X-Debug"}));
  EXPECT_TRUE(r.response_headers.set.empty());
  EXPECT_EQ(r.response_headers.add, (Pairs{{"Set-Cookie", "a=1"},
                                           {"set-cookie", "b=2"},
                                           {"X-Empty", ""},
                                           {"X-Tab", "a\tb"},
                                           {"X-Num", "1.50"}}));
}

TEST(RouteHeaders, OneNameInSeveralOperations) {
  // remove then set, set then add: each is a step of its own.
  Route r = route_of(R"(
        request_headers:
          remove: [X-Env, Via]
          set: {x-env: prod, Via: a}
          add: {X-ENV: second, via: b}
)");
  EXPECT_EQ(r.request_headers.remove, (Names{"X-Env", "Via"}));
  EXPECT_EQ(r.request_headers.set, (Pairs{{"x-env", "prod"}, {"Via", "a"}}));
  EXPECT_EQ(r.request_headers.add, (Pairs{{"X-ENV", "second"}, {"via", "b"}}));
}

TEST(RouteHeaders, TokenCharactersAndValueBytes) {
  Route r = route_of(R"(
        request_headers:
          set: {"!#$%&'*+-.^_`|~09azAZ": "caf\u00e9 \u2603", X-Quoted: "\"q\"; a=b, c"}
)");
  EXPECT_EQ(r.request_headers.set, (Pairs{{"!#$%&'*+-.^_`|~09azAZ", "caf\xc3\xa9 \xe2\x98\x83"},
                                          {"X-Quoted", "\"q\"; a=b, c"}}));
}

TEST(RouteHeaders, OptionalAndEmpty) {
  const Config& c = ok(load(R"(
listeners:
  - name: web
    listen: 127.0.0.1:8080
    routes:
      - match: {path_prefix: /a/}
        backend: web
      - match: {path_prefix: /b/}
        request_headers:
        response_headers: {}
        backend: web
      - match: {path_prefix: /c/}
        request_headers: {remove: [], set: {}, add: {}}
        response_headers:
          set:
          add:
        backend: web
    backend: web
backends:
  - name: web
    servers:
      - address: 127.0.0.1:9001
)"));
  ASSERT_EQ(c.listeners.size(), 1u);
  ASSERT_EQ(c.listeners[0].routes.size(), 4u);
  for (const Route& r : c.listeners[0].routes) {
    EXPECT_TRUE(r.request_headers.empty());
    EXPECT_TRUE(r.response_headers.empty());
  }
  // The shorthand is a route of its own, without rules.
  EXPECT_EQ(c.listeners[0].routes[3].match.path_prefix, "");
}

TEST(RouteHeaders, UnknownKeys) {
  EXPECT_EQ(error(with_rules(R"(
        request_headers:
          remove: [X-Debug]
          replace: {X-Env: prod}
)")),
            "t.yaml:8:11: unknown key \"replace\" in request_headers");
  EXPECT_EQ(error(with_rules(R"(
        response_headers: {sett: {X-Env: prod}}
)")),
            "t.yaml:6:28: unknown key \"sett\" in response_headers; did you mean \"set\"?");
  EXPECT_EQ(error(with_rules(R"(
        request_header:
          set: {X-Env: prod}
)")),
            "t.yaml:6:9: unknown key \"request_header\" in route; did you mean "
            "\"request_headers\"?");
  // Only routes have them: the listener's `backend:` shorthand takes none.
  EXPECT_EQ(error(R"(
listeners:
  - name: web
    listen: 127.0.0.1:8080
    backend: web
    request_headers: {set: {X-Env: prod}}
backends:
  - name: web
    servers:
      - address: 127.0.0.1:9001
)"),
            "t.yaml:5:5: unknown key \"request_headers\" in listener");
}

TEST(RouteHeaders, ValuesWithControlCharacters) {
  struct Case {
    const char* value;  // as written in the YAML file, after `X-Env: `
    const char* message;
  };
  const Case cases[] = {
      {R"("a\r\nb")", "header value for \"X-Env\" contains a line break"},
      {R"("a\nb")", "header value for \"X-Env\" contains a line break"},
      {R"("a\rb")", "header value for \"X-Env\" contains a line break"},
      {R"("a\0b")", "header value for \"X-Env\" contains a NUL byte"},
      {R"("a\x01b")", "header value for \"X-Env\" contains the control character 0x01"},
      {R"("a\eb")", "header value for \"X-Env\" contains the control character 0x1B"},
      {R"("a\x7fb")", "header value for \"X-Env\" contains the control character 0x7F"},
      {R"(" prod")", "header value for \"X-Env\" has leading or trailing whitespace"},
      {R"("prod\t")", "header value for \"X-Env\" has leading or trailing whitespace"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.value);
    // Block style: the value is at column 20 of line 8.
    EXPECT_EQ(error(with_rules(std::string(R"(
        request_headers:
          set:
            X-Env: )") + c.value +
                               "\n")),
              std::string("t.yaml:8:20: \"set\": ") + c.message);
    // Flow style, in `add` of response_headers: the value is at column 41 of line 6.
    EXPECT_EQ(error(with_rules(std::string(R"(
        response_headers: {add: {X-Env: )") +
                               c.value + "}}\n")),
              std::string("t.yaml:6:41: \"add\": ") + c.message);
  }
  // A literal line break inside a quoted value is folded to a space by YAML; a block scalar
  // keeps it.
  EXPECT_EQ(error(with_rules(R"(
        request_headers:
          add:
            X-Env: |
              line one
              line two
)")),
            "t.yaml:8:20: \"add\": header value for \"X-Env\" contains a line break");
}

TEST(RouteHeaders, ValuesOfTheWrongType) {
  EXPECT_EQ(error(with_rules(R"(
        request_headers:
          set: {X-Env: [a, b]}
)")),
            "t.yaml:7:24: \"set\": header value for \"X-Env\" must be a string, got a list");
  EXPECT_EQ(error(with_rules(R"(
        request_headers:
          add:
            X-Env: {a: b}
)")),
            "t.yaml:8:20: \"add\": header value for \"X-Env\" must be a string, got a map");
  // Nothing after the name: "" is how an empty value is written.
  EXPECT_EQ(error(with_rules(R"(
        request_headers:
          set:
            X-Env:
)")),
            "t.yaml:8:13: \"set\": header value for \"X-Env\" must be a string, got nothing");
}

TEST(RouteHeaders, BadNames) {
  const std::string allowed = ": only letters, digits and !#$%&'*+-.^_`|~ are allowed";
  EXPECT_EQ(error(with_rules(R"(
        request_headers:
          remove: [X-Ok, "X Bad"]
)")),
            "t.yaml:7:26: \"remove\": invalid header name \"X Bad\"" + allowed);
  EXPECT_EQ(error(with_rules(R"(
        request_headers:
          remove:
            - ""
)")),
            "t.yaml:8:15: \"remove\": header name must not be empty");
  EXPECT_EQ(error(with_rules(R"(
        request_headers:
          set:
            "": x
)")),
            "t.yaml:8:13: \"set\": header name must not be empty");
  EXPECT_EQ(error(with_rules(R"(
        response_headers:
          add: {"X Bad": x}
)")),
            "t.yaml:7:17: \"add\": invalid header name \"X Bad\"" + allowed);
  // HTTP/2 pseudo-headers are not field names.
  EXPECT_EQ(error(with_rules(R"(
        request_headers:
          set: {":authority": x}
)")),
            "t.yaml:7:17: \"set\": invalid header name \":authority\"" + allowed);
  EXPECT_EQ(error(with_rules(R"(
        request_headers:
          set: {"X-Caf\u00e9": x}
)")),
            "t.yaml:7:17: \"set\": invalid header name \"X-Caf\xc3\xa9\"" + allowed);
  EXPECT_EQ(error(with_rules(R"(
        request_headers:
          set: {[a, b]: x}
)")),
            "t.yaml:7:17: \"set\": header names must be strings, got a list");
  EXPECT_EQ(error(with_rules(R"(
        request_headers:
          remove: [X-Ok, [X-Nested]]
)")),
            "t.yaml:7:26: an item of \"remove\" must be a string, got a list");
}

TEST(RouteHeaders, BlocksOfTheWrongType) {
  EXPECT_EQ(error(with_rules(R"(
        request_headers:
          set: [X-Env, prod]
)")),
            "t.yaml:7:16: \"set\" must be a map of header names to values, got a list");
  EXPECT_EQ(error(with_rules(R"(
        response_headers:
          add: "Via: 1.1 weir"
)")),
            "t.yaml:7:16: \"add\" must be a map of header names to values, got \"Via: 1.1 weir\"");
  EXPECT_EQ(error(with_rules(R"(
        request_headers:
          remove: X-Debug
)")),
            "t.yaml:7:19: \"remove\" must be a list, got \"X-Debug\"");
  EXPECT_EQ(error(with_rules(R"(
        request_headers:
          remove: {X-Debug: true}
)")),
            "t.yaml:7:19: \"remove\" must be a list, got a map");
  EXPECT_EQ(error(with_rules(R"(
        request_headers:
          remove:
)")),
            "t.yaml:7:11: \"remove\" must be a list, got nothing");
  EXPECT_EQ(error(with_rules(R"(
        request_headers: [remove, X-Debug]
)")),
            "t.yaml:6:26: \"request_headers\" must be a map, got a list");
  EXPECT_EQ(error(with_rules(R"(
        response_headers: no-store
)")),
            "t.yaml:6:27: \"response_headers\" must be a map, got \"no-store\"");
}

TEST(RouteHeaders, Duplicates) {
  // `set` replaces: two spellings of one name would contradict each other.
  EXPECT_EQ(error(with_rules(R"(
        request_headers:
          set:
            X-Env: prod
            x-env: dev
)")),
            "t.yaml:9:13: \"set\": duplicate header name \"x-env\" (first at line 8; header names "
            "are case-insensitive)");
  EXPECT_EQ(error(with_rules(R"(
        request_headers:
          remove: [X-Debug, x-debug]
)")),
            "t.yaml:7:29: \"remove\": duplicate header name \"x-debug\" (first at line 7)");
  // The same key twice is a YAML duplicate, as everywhere in the file.
  EXPECT_EQ(error(with_rules(R"(
        response_headers:
          add:
            Via: a
            Via: b
)")),
            "t.yaml:9:13: duplicate key \"Via\" (first at line 8)");
}

TEST(RouteHeaders, HeadersWeirManagesItself) {
  const std::string framing =
      " cannot be changed by header rules: weir writes it from the message "
      "framing";
  const std::string hop =
      " cannot be changed by header rules: it is a hop-by-hop header, which "
      "weir never forwards";
  EXPECT_EQ(error(with_rules(R"(
        request_headers:
          set: {Content-Length: "0"}
)")),
            "t.yaml:7:17: \"set\": \"Content-Length\"" + framing);
  EXPECT_EQ(error(with_rules(R"(
        response_headers:
          remove: [transfer-encoding]
)")),
            "t.yaml:7:20: \"remove\": \"transfer-encoding\"" + framing);
  EXPECT_EQ(error(with_rules(R"(
        response_headers:
          add: {Connection: close}
)")),
            "t.yaml:7:17: \"add\": \"Connection\"" + hop);
  EXPECT_EQ(error(with_rules(R"(
        request_headers:
          remove: [Upgrade]
)")),
            "t.yaml:7:20: \"remove\": \"Upgrade\"" + hop);
  // A request has exactly one Host: it can be replaced, not removed or added to.
  EXPECT_EQ(errors(with_rules(R"(
        request_headers:
          remove: [Host]
          add: {host: b.example}
)")),
            (std::vector<std::string>{
                "t.yaml:7:20: \"remove\": a request carries exactly one Host: use \"set\" to "
                "replace it",
                "t.yaml:8:17: \"add\": a request carries exactly one Host: use \"set\" to replace "
                "it"}));
  Route r = route_of(R"(
        request_headers:
          set: {Host: backend.internal}
        response_headers:
          remove: [Host]
)");
  EXPECT_EQ(r.request_headers.set, (Pairs{{"Host", "backend.internal"}}));
  EXPECT_EQ(r.response_headers.remove, Names{"Host"});
}

TEST(RouteHeaders, EveryErrorOfABlockIsReported) {
  EXPECT_EQ(errors(with_rules(R"(
        request_headers:
          remove: ["", X-Ok]
          set: {X-Env: "a\nb", "X Bad": ok, X-Fine: fine}
          add: {X-Nul: "\0", Via: " v"}
        response_headers:
          bogus: 1
)")),
            (std::vector<std::string>{
                "t.yaml:7:20: \"remove\": header name must not be empty",
                "t.yaml:8:24: \"set\": header value for \"X-Env\" contains a line break",
                "t.yaml:8:32: \"set\": invalid header name \"X Bad\": only letters, digits and "
                "!#$%&'*+-.^_`|~ are allowed",
                "t.yaml:9:24: \"add\": header value for \"X-Nul\" contains a NUL byte",
                "t.yaml:9:35: \"add\": header value for \"Via\" has leading or trailing whitespace",
                "t.yaml:11:11: unknown key \"bogus\" in response_headers",
            }));
}

TEST(RouteHeaders, ExampleFile) {
  const Config& c = ok(load_config_file(example_path().string()));
  ASSERT_FALSE(c.listeners.empty());
  ASSERT_FALSE(c.listeners[0].routes.empty());
  const Route& api = c.listeners[0].routes[0];
  EXPECT_EQ(api.backend, "api");
  EXPECT_EQ(api.request_headers.remove, Names{"X-Debug"});
  EXPECT_EQ(api.request_headers.set, (Pairs{{"X-Env", "prod"}}));
  EXPECT_EQ(api.request_headers.add, (Pairs{{"Via", "1.1 weir"}}));
  EXPECT_EQ(api.response_headers.remove, Names{"X-Internal"});
  EXPECT_EQ(api.response_headers.set, (Pairs{{"Cache-Control", "no-store"}}));
  for (size_t i = 1; i < c.listeners[0].routes.size(); ++i) {
    EXPECT_TRUE(c.listeners[0].routes[i].request_headers.empty());
    EXPECT_TRUE(c.listeners[0].routes[i].response_headers.empty());
  }
}

}  // namespace
}  // namespace weir::config
