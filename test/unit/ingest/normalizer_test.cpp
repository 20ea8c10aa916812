#include "ingest/normalizer.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <limits>
#include <string>
#include <thread>
#include <vector>

namespace tern::ingest {
namespace {

using storage::Field;
using storage::FieldValue;

// 2026-11-22T07:33:47Z, computed with `date -u -d ... +%s`.
constexpr std::int64_t kTs2026Us = 1'795'332'827'000'000;

struct Flat {
  bool ok = false;
  std::vector<Field> fields;
  std::optional<std::int64_t> deviceTimeUs;

  const FieldValue* get(const std::string& key) const {
    for (const Field& field : fields) {
      if (field.key == key) {
        return &field.value;
      }
    }
    return nullptr;
  }
};

Flat flat(std::string_view json) {
  Flat out;
  out.ok = flattenJson(json, out.fields, out.deviceTimeUs);
  return out;
}

TEST(FlattenJsonTest, NestedObjectsJoinWithDots) {
  const Flat f = flat(R"({"a":{"b":1},"ok":true})");
  ASSERT_TRUE(f.ok);
  ASSERT_EQ(f.fields.size(), 2u);
  EXPECT_EQ(f.fields[0].key, "a.b");
  EXPECT_EQ(f.fields[0].value, FieldValue(std::int64_t{1}));
  EXPECT_EQ(f.fields[1].key, "ok");
  EXPECT_EQ(f.fields[1].value, FieldValue(true));
  EXPECT_FALSE(f.deviceTimeUs.has_value());
}

TEST(FlattenJsonTest, TypesAreKept) {
  const Flat f = flat(R"({"i":-5,"d":2.5,"whole":3.0,"e":1e3,"s":"x","f":false,"n":null})");
  ASSERT_TRUE(f.ok);
  EXPECT_EQ(f.fields.size(), 6u);  // null is skipped
  EXPECT_EQ(*f.get("i"), FieldValue(std::int64_t{-5}));
  EXPECT_EQ(*f.get("d"), FieldValue(2.5));
  EXPECT_EQ(*f.get("whole"), FieldValue(3.0));  // written as a double, stays one
  EXPECT_EQ(*f.get("e"), FieldValue(1000.0));
  EXPECT_EQ(*f.get("s"), FieldValue(std::string("x")));
  EXPECT_EQ(*f.get("f"), FieldValue(false));
  EXPECT_EQ(f.get("n"), nullptr);
}

TEST(FlattenJsonTest, ArraysAreIndexed) {
  const Flat f = flat(R"({"a":[10,{"b":"x"},[true,null,2.5]],"empty":[],"o":{}})");
  ASSERT_TRUE(f.ok);
  ASSERT_EQ(f.fields.size(), 4u);
  EXPECT_EQ(f.fields[0].key, "a.0");
  EXPECT_EQ(f.fields[0].value, FieldValue(std::int64_t{10}));
  EXPECT_EQ(f.fields[1].key, "a.1.b");
  EXPECT_EQ(f.fields[2].key, "a.2.0");
  EXPECT_EQ(f.fields[3].key, "a.2.2");
  EXPECT_EQ(f.fields[3].value, FieldValue(2.5));

  const Flat emptyKeys = flat(R"({"":{"a":1,"":[2]}})");
  ASSERT_TRUE(emptyKeys.ok);
  ASSERT_EQ(emptyKeys.fields.size(), 2u);
  EXPECT_EQ(emptyKeys.fields[0].key, ".a");
  EXPECT_EQ(emptyKeys.fields[1].key, "..0");

  const Flat top = flat(R"([1,"two",{"three":3}])");
  ASSERT_TRUE(top.ok);
  ASSERT_EQ(top.fields.size(), 3u);
  EXPECT_EQ(top.fields[0].key, "0");
  EXPECT_EQ(top.fields[1].key, "1");
  EXPECT_EQ(top.fields[2].key, "2.three");
}

TEST(FlattenJsonTest, UnicodeStringsAndKeys) {
  const Flat f = flat(R"({"température":"21 °C","emoji":"\ud83d\ude00 ☃","esc":"a\"b\\c\n"})");
  ASSERT_TRUE(f.ok);
  EXPECT_EQ(*f.get("température"), FieldValue(std::string("21 °C")));
  EXPECT_EQ(*f.get("emoji"), FieldValue(std::string("\xF0\x9F\x98\x80 ☃")));
  EXPECT_EQ(*f.get("esc"), FieldValue(std::string("a\"b\\c\n")));
  EXPECT_FALSE(flat("{\"bad\":\"\xff\"}").ok);  // invalid UTF-8
}

TEST(FlattenJsonTest, BigIntegers) {
  const Flat f =
      flat(R"({"max":9223372036854775807,"min":-9223372036854775808,"above":9223372036854775808,)"
           R"("umax":18446744073709551615})");
  ASSERT_TRUE(f.ok);
  EXPECT_EQ(*f.get("max"), FieldValue(std::numeric_limits<std::int64_t>::max()));
  EXPECT_EQ(*f.get("min"), FieldValue(std::numeric_limits<std::int64_t>::min()));
  EXPECT_EQ(*f.get("above"), FieldValue(9223372036854775808.0));
  EXPECT_EQ(*f.get("umax"), FieldValue(18446744073709551615.0));
  // simdjson's DOM parser refuses integers beyond the uint64/int64 range outright, so such a
  // payload is stored raw and flagged as not JSON.
  EXPECT_FALSE(flat(R"({"a":123456789012345678901234567890})").ok);
  EXPECT_FALSE(flat(R"({"a":-9223372036854775809})").ok);
}

TEST(FlattenJsonTest, DeepNesting) {
  std::string json;
  std::string key;
  constexpr int kDepth = 100;
  for (int i = 0; i < kDepth; ++i) {
    json += "{\"k" + std::to_string(i) + "\":";
    key += (i == 0 ? "k" : ".k") + std::to_string(i);
  }
  json += "42";
  json += std::string(kDepth, '}');
  const Flat f = flat(json);
  ASSERT_TRUE(f.ok);
  ASSERT_EQ(f.fields.size(), 1u);
  EXPECT_EQ(f.fields[0].key, key);
  EXPECT_EQ(f.fields[0].value, FieldValue(std::int64_t{42}));

  // Beyond the parser's depth limit the document is refused, not crashed on.
  EXPECT_FALSE(flat(std::string(5000, '[') + std::string(5000, ']')).ok);
}

TEST(FlattenJsonTest, DeviceTimeFromTsOrTime) {
  Flat f = flat(R"({"ts":"2026-11-22T07:33:47Z","v":1})");
  ASSERT_TRUE(f.ok);
  EXPECT_EQ(f.deviceTimeUs, kTs2026Us);
  EXPECT_EQ(*f.get("ts"), FieldValue(std::string("2026-11-22T07:33:47Z")));  // also a field

  f = flat(R"({"ts":"2026-11-22T07:33:47.250Z"})");
  EXPECT_EQ(f.deviceTimeUs, kTs2026Us + 250'000);

  f = flat(R"({"time":1795332827})");  // epoch seconds
  EXPECT_EQ(f.deviceTimeUs, kTs2026Us);
  EXPECT_EQ(*f.get("time"), FieldValue(std::int64_t{1795332827}));

  f = flat(R"({"ts":1795332827123})");  // epoch milliseconds
  EXPECT_EQ(f.deviceTimeUs, kTs2026Us + 123'000);

  f = flat(R"({"ts":1795332827.5})");  // fractional seconds
  EXPECT_EQ(f.deviceTimeUs, kTs2026Us + 500'000);

  f = flat(R"({"ts":"soon","time":1795332827})");  // an unusable ts falls back to time
  EXPECT_EQ(f.deviceTimeUs, kTs2026Us);

  f = flat(R"({"ts":"not a time"})");
  EXPECT_TRUE(f.ok);
  EXPECT_FALSE(f.deviceTimeUs.has_value());

  f = flat(R"({"inner":{"ts":1795332827}})");  // only the top level counts
  EXPECT_FALSE(f.deviceTimeUs.has_value());
}

TEST(FlattenJsonTest, InvalidOrScalarJsonIsFlagged) {
  for (const char* text : {"", "   ", "not json", "{\"a\":1", "{\"a\":1,}", "{\"a\":1} x",
                           "{'a':1}", "42", "\"str\"", "true", "null", "{\"a\":NaN}", "[1 2]"}) {
    std::vector<Field> fields{{"stale", std::int64_t{1}}};
    std::optional<std::int64_t> time = 5;
    EXPECT_FALSE(flattenJson(text, fields, time)) << text;
    EXPECT_TRUE(fields.empty()) << text;
    EXPECT_FALSE(time.has_value()) << text;
  }
  EXPECT_TRUE(flat("{}").ok);
  EXPECT_TRUE(flat(" [ ] ").ok);
}

std::vector<core::IngestRoute> defaultRoutes() {
  return {{"device/+", "topic:2"}};
}

TEST(NormalizerTest, DeviceFromTopicLevel) {
  const Normalizer normalizer(defaultRoutes(), "node-a");
  EXPECT_TRUE(normalizer.matches("device/t1"));
  EXPECT_FALSE(normalizer.matches("device/t1/extra"));
  EXPECT_FALSE(normalizer.matches("other/t1"));

  auto record = normalizer.normalize("device/t1", R"({"temp":21.5,"ts":1795332827})", 777);
  ASSERT_TRUE(record.has_value());
  EXPECT_EQ(record->deviceId, "t1");
  EXPECT_EQ(record->serverTimeUs, 777);
  EXPECT_EQ(record->deviceTimeUs, kTs2026Us);
  EXPECT_EQ(record->nodeId, "node-a");
  EXPECT_EQ(record->topic, "device/t1");
  EXPECT_EQ(record->payload, R"({"temp":21.5,"ts":1795332827})");
  EXPECT_TRUE(record->payloadIsJson);
  ASSERT_EQ(record->fields.size(), 2u);
  EXPECT_EQ(record->fields[0].value, FieldValue(21.5));

  EXPECT_FALSE(normalizer.normalize("elsewhere/t1", "{}", 1).has_value());
}

TEST(NormalizerTest, NonJsonPayloadIsKeptRawAndFlagged) {
  const Normalizer normalizer(defaultRoutes(), "n");
  const std::string binary("\x00\x01\xfe\xff raw", 8);
  auto record = normalizer.normalize("device/t2", binary, 5);
  ASSERT_TRUE(record.has_value());
  EXPECT_EQ(record->deviceId, "t2");
  EXPECT_FALSE(record->payloadIsJson);
  EXPECT_EQ(record->payload, binary);
  EXPECT_TRUE(record->fields.empty());
  EXPECT_FALSE(record->deviceTimeUs.has_value());

  record = normalizer.normalize("device/t2", "12.5", 5);  // a bare number is not a document
  ASSERT_TRUE(record.has_value());
  EXPECT_FALSE(record->payloadIsJson);
}

TEST(NormalizerTest, MissingOrEmptyTopicLevelGivesNothing) {
  const Normalizer normalizer({{"site/#", "topic:3"}}, "n");
  EXPECT_EQ(normalizer.normalize("site/a/dev9/x", "{}", 1)->deviceId, "dev9");
  EXPECT_EQ(normalizer.normalize("site/a/dev9", "{}", 1)->deviceId, "dev9");
  EXPECT_FALSE(normalizer.normalize("site/a", "{}", 1).has_value());
  EXPECT_FALSE(normalizer.normalize("site/a//x", "{}", 1).has_value());
  EXPECT_FALSE(normalizer.normalize("site/a/", "{}", 1).has_value());
}

TEST(NormalizerTest, DeviceFromJsonField) {
  const Normalizer normalizer({{"json/#", "json:id"}, {"nested/#", "json:meta.device.id"}}, "n");
  EXPECT_EQ(normalizer.normalize("json/x", R"({"id":"abc","v":1})", 1)->deviceId, "abc");
  EXPECT_EQ(normalizer.normalize("json/x", R"({"id":12345})", 1)->deviceId, "12345");
  EXPECT_EQ(normalizer.normalize("json/x", R"({"id":-7})", 1)->deviceId, "-7");
  EXPECT_FALSE(normalizer.normalize("json/x", R"({"other":"abc"})", 1).has_value());
  EXPECT_FALSE(normalizer.normalize("json/x", R"({"id":""})", 1).has_value());
  EXPECT_FALSE(normalizer.normalize("json/x", R"({"id":1.5})", 1).has_value());
  EXPECT_FALSE(normalizer.normalize("json/x", R"({"id":true})", 1).has_value());
  EXPECT_FALSE(normalizer.normalize("json/x", R"({"id":{"x":1}})", 1).has_value());
  EXPECT_FALSE(normalizer.normalize("json/x", "not json", 1).has_value());

  auto record = normalizer.normalize("nested/a", R"({"meta":{"device":{"id":"d-1"}},"t":2})", 9);
  ASSERT_TRUE(record.has_value());
  EXPECT_EQ(record->deviceId, "d-1");
  EXPECT_TRUE(record->payloadIsJson);
  EXPECT_EQ(record->fields.size(), 2u);
  EXPECT_FALSE(normalizer.normalize("nested/a", R"({"meta":{"device":"d-1"}})", 1).has_value());
}

TEST(NormalizerTest, FirstMatchingRouteWins) {
  const Normalizer normalizer({{"a/special", "json:id"}, {"a/+", "topic:2"}, {"#", "topic:1"}},
                              "n");
  EXPECT_EQ(normalizer.normalize("a/special", R"({"id":"from-json"})", 1)->deviceId, "from-json");
  // The first match decides even when it finds no id: no fall-through to later routes.
  EXPECT_FALSE(normalizer.normalize("a/special", R"({"x":1})", 1).has_value());
  EXPECT_EQ(normalizer.normalize("a/other", "{}", 1)->deviceId, "other");
  EXPECT_EQ(normalizer.normalize("b/c/d", "{}", 1)->deviceId, "b");
  EXPECT_TRUE(normalizer.matches("zzz"));
  EXPECT_FALSE(normalizer.matches("$SYS/broker"));  // wildcards skip '$' topics
}

TEST(NormalizerTest, NoRoutesMatchNothing) {
  const Normalizer normalizer({}, "n");
  EXPECT_FALSE(normalizer.matches("device/x"));
  EXPECT_FALSE(normalizer.normalize("device/x", "{}", 1).has_value());
}

TEST(NormalizerTest, BadRoutesThrowConfigError) {
  const std::vector<core::IngestRoute> bad[] = {
      {{"device/#/x", "topic:2"}}, {{"dev+/x", "topic:1"}},
      {{"", "topic:1"}},           {{"device/+", "topic:0"}},
      {{"device/+", "topic:"}},    {{"device/+", "topic:x"}},
      {{"device/+", "topic:-1"}},  {{"device/+", "topic:2x"}},
      {{"device/+", "json:"}},     {{"device/+", "json:.a"}},
      {{"device/+", "json:a..b"}}, {{"device/+", "header:x"}},
      {{"device/+", ""}},          {{"device/+", "topic:2"}, {"ok/#", "nope"}},
  };
  for (const auto& routes : bad) {
    EXPECT_THROW(Normalizer(routes, "n"), core::ConfigError)
        << routes.back().filter << " " << routes.back().deviceId;
  }
  try {
    Normalizer({{"device/+", "topic:2"}, {"x", "bogus"}}, "n");
    FAIL();
  } catch (const core::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("ingest.routes[1]"), std::string::npos) << e.what();
  }
  EXPECT_NO_THROW(Normalizer({{"a/+/b/#", "topic:65535"}, {"c", "json:x.y"}}, "n"));
}

TEST(NormalizerTest, UsableFromManyThreads) {
  const Normalizer normalizer(defaultRoutes(), "n");
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 2000; ++i) {
        // Appended, not operator+(const char*, string&&): GCC 12 flags that with a false
        // -Wrestrict at -O3.
        std::string device = "d";
        device += std::to_string(t);
        const std::string payload = R"({"i":)" + std::to_string(i) + R"(,"s":"x"})";
        auto record = normalizer.normalize("device/" + device, payload, i);
        if (!record || record->deviceId != device || record->fields.size() != 2 ||
            record->fields[0].value != FieldValue(std::int64_t{i})) {
          ++failures;
        }
      }
    });
  }
  for (auto& thread : threads) {
    thread.join();
  }
  EXPECT_EQ(failures.load(), 0);
}

}  // namespace
}  // namespace tern::ingest
