// HeaderEdits (typed head edits made by filters) and ResponseOut::for_each_field.
#include "proxy/head_edits.hpp"

#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "http/parser.hpp"

namespace weir::proxy {
namespace {

using Fields = std::vector<std::pair<std::string, std::string>>;

Fields added(const HeaderEdits& e) {
  Fields out;
  e.for_each_added([&](std::string_view n, std::string_view v) { out.emplace_back(n, v); });
  return out;
}

Fields fields_of(const ResponseOut& r) {
  Fields out;
  r.for_each_field([&](std::string_view n, std::string_view v) { out.emplace_back(n, v); });
  return out;
}

TEST(HeaderEdits, StartsEmpty) {
  HeaderEdits e;
  EXPECT_TRUE(e.empty());
  EXPECT_EQ(e.added_count(), 0u);
  EXPECT_FALSE(e.removes("X-Anything"));
  EXPECT_TRUE(added(e).empty());
}

TEST(HeaderEdits, AddKeepsOrderAndDuplicates) {
  HeaderEdits e;
  e.add("Via", "1.1 weir");
  e.add("X-B", "b");
  e.add("Via", "1.1 other");
  e.add("x-b", "");  // empty values are kept
  EXPECT_FALSE(e.empty());
  EXPECT_EQ(e.added_count(), 4u);
  EXPECT_EQ(added(e),
            (Fields{{"Via", "1.1 weir"}, {"X-B", "b"}, {"Via", "1.1 other"}, {"x-b", ""}}));
  EXPECT_FALSE(e.removes("Via"));  // adding is not removing
}

TEST(HeaderEdits, RemoveIsCaseInsensitive) {
  HeaderEdits e;
  e.remove("X-Internal");
  EXPECT_FALSE(e.empty());
  EXPECT_TRUE(e.removes("X-Internal"));
  EXPECT_TRUE(e.removes("x-internal"));
  EXPECT_TRUE(e.removes("X-INTERNAL"));
  EXPECT_FALSE(e.removes("X-Internal2"));
  EXPECT_FALSE(e.removes("X-Interna"));
  EXPECT_FALSE(e.removes(""));
  EXPECT_EQ(e.added_count(), 0u);
}

TEST(HeaderEdits, RemoveDropsEarlierAddsOfThatName) {
  HeaderEdits e;
  e.add("X-A", "1");
  e.add("X-B", "2");
  e.add("x-a", "3");
  e.add("X-C", "4");
  e.add("X-A", "5");
  e.remove("X-a");
  EXPECT_EQ(added(e), (Fields{{"X-B", "2"}, {"X-C", "4"}}));
  EXPECT_TRUE(e.removes("x-A"));
  // A later add of the name stays: the removal is of what came before it (and of received
  // fields).
  e.add("X-A", "6");
  EXPECT_EQ(added(e), (Fields{{"X-B", "2"}, {"X-C", "4"}, {"X-A", "6"}}));
  EXPECT_TRUE(e.removes("X-A"));
}

TEST(HeaderEdits, RemovingTwiceIsTheSameAsOnce) {
  HeaderEdits e;
  e.remove("X-A");
  e.remove("x-a");
  EXPECT_TRUE(e.removes("X-A"));
  e.add("X-A", "1");
  e.remove("X-A");
  EXPECT_EQ(e.added_count(), 0u);
}

TEST(HeaderEdits, SetIsRemoveThenAdd) {
  HeaderEdits e;
  e.add("Cache-Control", "max-age=60");
  e.add("X-Keep", "k");
  e.add("cache-control", "public");
  e.set("CACHE-CONTROL", "no-store");
  EXPECT_EQ(added(e), (Fields{{"X-Keep", "k"}, {"CACHE-CONTROL", "no-store"}}));
  EXPECT_TRUE(e.removes("Cache-Control"));  // received fields of that name go too
  e.set("Cache-Control", "private");        // setting again replaces the earlier set
  EXPECT_EQ(added(e), (Fields{{"X-Keep", "k"}, {"Cache-Control", "private"}}));
  e.add("cache-control", "extra");  // an add after the set is kept
  EXPECT_EQ(added(e),
            (Fields{{"X-Keep", "k"}, {"Cache-Control", "private"}, {"cache-control", "extra"}}));
}

TEST(HeaderEdits, Clear) {
  HeaderEdits e;
  e.remove("X-A");
  e.add("X-B", "b");
  e.set("X-C", "c");
  e.clear();
  EXPECT_TRUE(e.empty());
  EXPECT_EQ(e.added_count(), 0u);
  EXPECT_FALSE(e.removes("X-A"));
  EXPECT_FALSE(e.removes("X-C"));
  EXPECT_TRUE(added(e).empty());
  // Usable again after clear (pooled exchanges reuse their edits).
  e.add("X-D", "d");
  e.remove("X-E");
  EXPECT_EQ(added(e), (Fields{{"X-D", "d"}}));
  EXPECT_TRUE(e.removes("x-e"));
  EXPECT_FALSE(e.removes("X-A"));
}

TEST(HeaderEdits, InputsAreCopied) {
  HeaderEdits e;
  {
    std::string name = "X-Temp";
    std::string value = "temporary value";
    e.add(name, value);
    e.remove(std::string("X-Gone"));
    name.assign(name.size(), '#');
    value.assign(value.size(), '#');
  }
  EXPECT_EQ(added(e), (Fields{{"X-Temp", "temporary value"}}));
  EXPECT_TRUE(e.removes("x-gone"));
}

TEST(HeaderEdits, ThousandsOfEditsStayCorrect) {
  HeaderEdits e;
  constexpr int kN = 3000;
  Fields expect;
  for (int i = 0; i < kN; ++i) {
    std::string name = "X-Field-" + std::to_string(i);
    std::string value = std::string(static_cast<size_t>(i % 97), 'v') + std::to_string(i);
    e.add(name, value);
    expect.emplace_back(name, value);
    if (i % 1000 == 0) {
      // Views handed out after many appends (the arena has grown) are still right.
      ASSERT_EQ(added(e), expect) << "after " << i + 1 << " adds";
    }
  }
  ASSERT_EQ(e.added_count(), static_cast<size_t>(kN));
  EXPECT_EQ(added(e), expect);

  // Remove every third name (in upper case), interleaved with more adds.
  Fields after;
  for (int i = 0; i < kN; ++i) {
    if (i % 3 == 0) {
      std::string upper = "X-FIELD-" + std::to_string(i);
      e.remove(upper);
    }
  }
  for (int i = 0; i < kN; ++i)
    if (i % 3 != 0) after.push_back(expect[static_cast<size_t>(i)]);
  for (int i = 0; i < 500; ++i) {
    std::string name = "X-Late-" + std::to_string(i);
    e.set(name, "late " + std::to_string(i));
    after.emplace_back(name, "late " + std::to_string(i));
  }
  EXPECT_EQ(added(e), after);
  for (int i = 0; i < kN; i += 3)
    EXPECT_TRUE(e.removes("x-field-" + std::to_string(i))) << i;
  EXPECT_FALSE(e.removes("X-Field-1"));
  EXPECT_TRUE(e.removes("x-late-499"));  // set removes first

  e.clear();
  EXPECT_TRUE(e.empty());
  e.add("A", "1");
  EXPECT_EQ(added(e), (Fields{{"A", "1"}}));
}

TEST(HeaderEdits, LongNamesAndValues) {
  HeaderEdits e;
  std::string big_value(200 * 1024, 'x');
  e.add("X-Big", big_value);
  e.add("X-Small", "s");
  std::string big_name(10 * 1024, 'N');
  e.remove(big_name);
  Fields got = added(e);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].second, big_value);
  EXPECT_EQ(got[1], (std::pair<std::string, std::string>{"X-Small", "s"}));
  EXPECT_TRUE(e.removes(std::string(10 * 1024, 'n')));
}

// ---- ResponseOut::for_each_field ---------------------------------------------------------------

TEST(ResponseOut, FieldsWithoutEditsAreTheReceivedOnes) {
  const http::Header received[] = {{"Content-Type", "text/plain"}, {"X-A", "1"}, {"X-A", "2"}};
  ResponseOut r;
  r.fields = received;
  EXPECT_EQ(fields_of(r), (Fields{{"Content-Type", "text/plain"}, {"X-A", "1"}, {"X-A", "2"}}));
  HeaderEdits none;
  r.edits = &none;
  EXPECT_EQ(fields_of(r), (Fields{{"Content-Type", "text/plain"}, {"X-A", "1"}, {"X-A", "2"}}));
}

TEST(ResponseOut, ReceivedMinusRemovedThenAdded) {
  const http::Header received[] = {
      {"Server", "backend"},     {"X-Internal", "secret"},        {"Content-Type", "text/html"},
      {"x-internal", "secret2"}, {"Cache-Control", "max-age=60"}, {"Set-Cookie", "a=1"},
  };
  HeaderEdits e;
  e.remove("X-INTERNAL");
  e.set("cache-control", "no-store");
  e.add("Set-Cookie", "b=2");
  e.add("Via", "1.1 weir");
  ResponseOut r;
  r.fields = received;
  r.edits = &e;
  EXPECT_EQ(fields_of(r), (Fields{{"Server", "backend"},
                                  {"Content-Type", "text/html"},
                                  {"Set-Cookie", "a=1"},
                                  {"cache-control", "no-store"},
                                  {"Set-Cookie", "b=2"},
                                  {"Via", "1.1 weir"}}));
}

TEST(ResponseOut, LocalAnswerHasOnlyAddedFields) {
  HeaderEdits e;
  e.set("Location", "https://example.com/");
  e.remove("Server");
  ResponseOut r;
  r.status = 308;
  r.local = true;
  r.edits = &e;
  EXPECT_EQ(fields_of(r), (Fields{{"Location", "https://example.com/"}}));
}

TEST(ResponseOut, ManyEditsOverManyFields) {
  std::vector<std::string> names, values;
  for (int i = 0; i < 300; ++i) {
    names.push_back("X-Recv-" + std::to_string(i));
    values.push_back("r" + std::to_string(i));
  }
  std::vector<http::Header> received;
  for (size_t i = 0; i < names.size(); ++i)
    received.push_back({names[i], values[i]});
  HeaderEdits e;
  Fields expect;
  for (int i = 0; i < 300; ++i)
    if (i % 2 == 0) e.remove("x-recv-" + std::to_string(i));
  for (size_t i = 0; i < names.size(); ++i)
    if (i % 2 == 1) expect.emplace_back(names[i], values[i]);
  for (int i = 0; i < 2000; ++i) {
    e.add("X-Added-" + std::to_string(i), std::to_string(i));
    expect.emplace_back("X-Added-" + std::to_string(i), std::to_string(i));
  }
  ResponseOut r;
  r.fields = received;
  r.edits = &e;
  EXPECT_EQ(fields_of(r), expect);
}

}  // namespace
}  // namespace weir::proxy
