#include "core/time.h"

#include <gtest/gtest.h>

namespace tern::core {
namespace {

constexpr std::int64_t kSample = 1'795'332'827'123'000;  // 2026-11-22T07:33:47.123Z

TEST(TimeTest, ClocksAdvance) {
  const auto wall = nowMicros();
  EXPECT_GT(wall, 1'700'000'000'000'000);  // after 2023
  const auto a = monotonicMicros();
  const auto b = monotonicMicros();
  EXPECT_LE(a, b);
}

TEST(TimeTest, FormatsRfc3339Millis) {
  EXPECT_EQ(formatRfc3339Millis(0), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(formatRfc3339Millis(kSample), "2026-11-22T07:33:47.123Z");
  EXPECT_EQ(formatRfc3339Millis(kSample + 999), "2026-11-22T07:33:47.123Z");  // truncates µs
  EXPECT_EQ(formatRfc3339Millis(1'709'164'800'000'000), "2024-02-29T00:00:00.000Z");
}

TEST(TimeTest, FormatsPre1970WithFloorSemantics) {
  EXPECT_EQ(formatRfc3339Millis(-1), "1969-12-31T23:59:59.999Z");
  EXPECT_EQ(formatRfc3339Millis(-1000), "1969-12-31T23:59:59.999Z");
  EXPECT_EQ(formatRfc3339Millis(-1001), "1969-12-31T23:59:59.998Z");
  EXPECT_EQ(formatRfc3339Millis(-62'135'596'800'000'000), "0001-01-01T00:00:00.000Z");
  // Out-of-range values clamp instead of printing garbage.
  EXPECT_FALSE(formatRfc3339Millis(INT64_MIN).empty());
  EXPECT_FALSE(formatRfc3339Millis(INT64_MAX).empty());
  EXPECT_EQ(formatRfc3339Millis(INT64_MIN).front(), '-');
}

TEST(TimeTest, ParsesCommonForms) {
  EXPECT_EQ(parseIso8601("2026-11-22T07:33:47.123Z"), kSample);
  EXPECT_EQ(parseIso8601("2026-11-22t07:33:47.123z"), kSample);
  EXPECT_EQ(parseIso8601("2026-11-22 07:33:47.123Z"), kSample);
  EXPECT_EQ(parseIso8601("2026-11-22T07:33:47.123"), kSample);  // no zone: UTC
  EXPECT_EQ(parseIso8601("2026-11-22T07:33:47Z"), kSample - 123'000);
  EXPECT_EQ(parseIso8601("2026-11-22T07:33Z"), kSample - 47'123'000);
  EXPECT_EQ(parseIso8601("2024-02-29"), 1'709'164'800'000'000);
  EXPECT_EQ(parseIso8601("1970-01-01T00:00:00Z"), 0);
}

TEST(TimeTest, ParsesFractionsOfAnyLength) {
  EXPECT_EQ(parseIso8601("1970-01-01T00:00:00.5Z"), 500'000);
  EXPECT_EQ(parseIso8601("1970-01-01T00:00:00.000001Z"), 1);
  EXPECT_EQ(parseIso8601("1970-01-01T00:00:00.123456789Z"), 123'456);
  EXPECT_EQ(parseIso8601("1970-01-01T00:00:00,25Z"), 250'000);
  EXPECT_EQ(parseIso8601("1970-01-01T00:00:00.Z"), std::nullopt);
  EXPECT_EQ(parseIso8601("1970-01-01T00:00:00.12a"), std::nullopt);
}

TEST(TimeTest, ParsesOffsets) {
  const std::int64_t utc = 1'795'325'627'500'000;  // 2026-11-22T05:33:47.5Z
  EXPECT_EQ(parseIso8601("2026-11-22T07:33:47.5+02:00"), utc);
  EXPECT_EQ(parseIso8601("2026-11-22T07:33:47.5+0200"), utc);
  EXPECT_EQ(parseIso8601("2026-11-22T03:03:47.5-02:30"), utc);
  EXPECT_EQ(parseIso8601("2026-11-22T05:33:47.5+00:00"), utc);
  EXPECT_EQ(parseIso8601("2026-11-22T05:33:47.5-00:00"), utc);
  // An offset can move the instant across midnight and before the epoch.
  EXPECT_EQ(parseIso8601("1970-01-01T00:00:00+01:00"), -3'600'000'000);
}

TEST(TimeTest, RejectsGarbageAndOutOfRange) {
  for (const char* bad : {"",
                          "x",
                          "2026",
                          "2026-11",
                          "2026-1-22",
                          "26-11-22",
                          "2026/11/22",
                          "2026-13-01",
                          "2026-00-10",
                          "2026-11-00",
                          "2026-11-31",
                          "2025-02-29",
                          "2026-11-22T",
                          "2026-11-22T24:00:00Z",
                          "2026-11-22T23:60:00Z",
                          "2026-11-22T23:59:60Z",
                          "2026-11-22T7:33:47Z",
                          "2026-11-22X07:33:47Z",
                          "2026-11-22T07:33:47+2",
                          "2026-11-22T07:33:47+24:00",
                          "2026-11-22T07:33:47+02:60",
                          "2026-11-22T07:33:47ZZ",
                          "2026-11-22T07:33:47Q",
                          " 2026-11-22",
                          "2026-11-22 ",
                          "2026-11-22T07:33:47.123Z trailing",
                          "2026-11-22T07:33:4"}) {
    EXPECT_EQ(parseIso8601(bad), std::nullopt) << bad;
  }
}

TEST(TimeTest, RoundTripsFormatAndParse) {
  for (std::int64_t ms : {std::int64_t{0}, std::int64_t{1}, std::int64_t{-1},
                          std::int64_t{951'782'400'000}, std::int64_t{4'102'444'799'999},
                          std::int64_t{-2'208'988'800'000}, std::int64_t{253'402'300'799'999}}) {
    const std::int64_t micros = ms * 1000;
    const std::string text = formatRfc3339Millis(micros);
    EXPECT_EQ(parseIso8601(text), micros) << text;
  }
}

TEST(TimeTest, TimeParamTellsUnitsByMagnitude) {
  EXPECT_EQ(parseTimeParam("1795332827"), 1'795'332'827'000'000);  // seconds
  EXPECT_EQ(parseTimeParam("1795332827123"), kSample);             // milliseconds
  EXPECT_EQ(parseTimeParam("1795332827123000"), kSample);          // microseconds
  EXPECT_EQ(parseTimeParam("0"), 0);
  EXPECT_EQ(parseTimeParam("99999999999"), 99'999'999'999'000'000);   // just below 1e11
  EXPECT_EQ(parseTimeParam("100000000000"), 100'000'000'000'000);     // 1e11 → ms
  EXPECT_EQ(parseTimeParam("100000000000000"), 100'000'000'000'000);  // 1e14 → µs
  EXPECT_EQ(parseTimeParam("2026-11-22T07:33:47.123Z"), kSample);
  EXPECT_EQ(parseTimeParam(""), std::nullopt);
  EXPECT_EQ(parseTimeParam("-"), std::nullopt);
  EXPECT_EQ(parseTimeParam("12abc"), std::nullopt);
  EXPECT_EQ(parseTimeParam("99999999999999999999"), std::nullopt);  // overflows int64
}

TEST(TimeTest, EpochToMicros) {
  EXPECT_EQ(epochToMicros(1795332827.123), kSample);
  EXPECT_EQ(epochToMicros(1795332827123.0), kSample);
  EXPECT_EQ(epochToMicros(1795332827123.5), kSample + 500);
  EXPECT_EQ(epochToMicros(0.0), 0);
  EXPECT_EQ(epochToMicros(-1.0), std::nullopt);
  EXPECT_EQ(epochToMicros(std::numeric_limits<double>::quiet_NaN()), std::nullopt);
  EXPECT_EQ(epochToMicros(std::numeric_limits<double>::infinity()), std::nullopt);
  EXPECT_EQ(epochToMicros(1e300), std::nullopt);
}

TEST(TimeTest, ParsesDurations) {
  EXPECT_EQ(parseDuration("500ms"), 500'000);
  EXPECT_EQ(parseDuration("5s"), 5'000'000);
  EXPECT_EQ(parseDuration("5"), 5'000'000);
  EXPECT_EQ(parseDuration("1m"), 60'000'000);
  EXPECT_EQ(parseDuration("1h"), 3'600'000'000);
  EXPECT_EQ(parseDuration("1d"), 86'400'000'000);
  EXPECT_EQ(parseDuration("2w"), 1'209'600'000'000);
  EXPECT_EQ(parseDuration("0"), 0);
  EXPECT_EQ(parseDuration("0s"), 0);
}

TEST(TimeTest, RejectsBadDurations) {
  for (const char* bad : {"", "s", "ms", "-5s", "5 s", "5x", "5S", "1.5s", "0ms", "0h", "5ss",
                          " 5s", "99999999999999999999", "9999999999999999w"}) {
    EXPECT_EQ(parseDuration(bad), std::nullopt) << bad;
  }
}

}  // namespace
}  // namespace tern::core
