// OsmAnd / Traccar Client parameter mapping: every parameter, errors, timestamps in all forms.
#include "codec/trackers/osmand/osmand.h"

#include <gtest/gtest.h>

#include "codec/trackers/util.h"

namespace tern::codec::trackers {
namespace {

using Params = std::map<std::string, std::string>;

constexpr std::int64_t kNow = 1'700'000'000'123'456;

Position decodeOk(const Params& params) {
  OsmandResult r = decodeOsmand(params, kNow);
  EXPECT_EQ(r.error, "");
  EXPECT_TRUE(r.position.has_value());
  return r.position.value_or(Position{});
}

std::string errorOf(const Params& params) {
  OsmandResult r = decodeOsmand(params, kNow);
  EXPECT_FALSE(r.position.has_value());
  return r.error;
}

std::int64_t utc(int y, int mo, int d, int h, int mi, int s) {
  return *civilToMicros(y, mo, d, h, mi, s);
}

TEST(Osmand, MinimalRequest) {
  Position p = decodeOk({{"id", "123456"}, {"lat", "60.1"}, {"lon", "-24.5"}});
  EXPECT_EQ(p.protocol, "osmand");
  EXPECT_EQ(p.deviceId, "123456");
  EXPECT_TRUE(p.hasLocation);
  EXPECT_TRUE(p.valid);
  EXPECT_DOUBLE_EQ(p.latitude, 60.1);
  EXPECT_DOUBLE_EQ(p.longitude, -24.5);
  EXPECT_EQ(p.deviceTimeUs, kNow);  // no timestamp: the server's time
  EXPECT_DOUBLE_EQ(p.speedKmh, 0);
  EXPECT_FALSE(p.course.has_value());
  EXPECT_FALSE(p.altitude.has_value());
  EXPECT_TRUE(p.attributes.empty());
}

TEST(Osmand, EveryParameter) {
  Position p = decodeOk({{"deviceid", "phone-7"},
                         {"lat", "-33.868765"},
                         {"lon", "151.20929"},
                         {"timestamp", "1609459200"},
                         {"speed", "10.5"},
                         {"bearing", "271.5"},
                         {"altitude", "-12.25"},
                         {"accuracy", "4.8"},
                         {"hdop", "0.9"},
                         {"batt", "87.5"},
                         {"charge", "true"},
                         {"driverUniqueId", "D-42"},
                         {"valid", "false"},
                         {"steps", "1200"},
                         {"is_moving", "false"},
                         {"odometer", "12345.5"},
                         {"event", "motionchange"},
                         {"cell", "244,91,1234,5678"},
                         {"wifi", "00-11-22-33-44-55,-70"}});
  EXPECT_EQ(p.deviceId, "phone-7");
  EXPECT_DOUBLE_EQ(p.latitude, -33.868765);
  EXPECT_DOUBLE_EQ(p.longitude, 151.20929);
  EXPECT_EQ(p.deviceTimeUs, utc(2021, 1, 1, 0, 0, 0));
  EXPECT_DOUBLE_EQ(p.speedKmh, 10.5 * kKnotsToKmh);
  EXPECT_DOUBLE_EQ(*p.course, 271.5);
  EXPECT_DOUBLE_EQ(*p.altitude, -12.25);
  EXPECT_DOUBLE_EQ(*p.hdop, 0.9);
  EXPECT_FALSE(p.valid);
  EXPECT_DOUBLE_EQ(std::get<double>(*p.get("accuracy")), 4.8);
  EXPECT_DOUBLE_EQ(std::get<double>(*p.get("batteryLevel")), 87.5);
  EXPECT_EQ(std::get<bool>(*p.get("charge")), true);
  EXPECT_EQ(std::get<std::string>(*p.get("driverUniqueId")), "D-42");
  EXPECT_DOUBLE_EQ(std::get<double>(*p.get("steps")), 1200);
  EXPECT_EQ(std::get<bool>(*p.get("is_moving")), false);
  EXPECT_DOUBLE_EQ(std::get<double>(*p.get("odometer")), 12345.5);
  EXPECT_EQ(std::get<std::string>(*p.get("event")), "motionchange");
  // Cell towers and Wi-Fi are not modelled; they do not become attributes.
  EXPECT_EQ(p.get("cell"), nullptr);
  EXPECT_EQ(p.get("wifi"), nullptr);
  EXPECT_EQ(p.get("lat"), nullptr);
  EXPECT_EQ(p.get("timestamp"), nullptr);
}

TEST(Osmand, IdAndHeadingAliases) {
  Position p =
      decodeOk({{"id", "a"}, {"deviceid", "b"}, {"lat", "1"}, {"lon", "2"}, {"heading", "90"}});
  EXPECT_EQ(p.deviceId, "a");  // id wins over deviceid
  EXPECT_DOUBLE_EQ(*p.course, 90);
  Position q = decodeOk({{"id", ""}, {"deviceid", "b"}, {"lat", "1"}, {"lon", "2"}});
  EXPECT_EQ(q.deviceId, "b");
}

TEST(Osmand, LocationParameter) {
  Position p = decodeOk({{"id", "1"}, {"location", "52.5200,13.4050"}});
  EXPECT_DOUBLE_EQ(p.latitude, 52.52);
  EXPECT_DOUBLE_EQ(p.longitude, 13.405);
  EXPECT_EQ(errorOf({{"id", "1"}, {"location", "52.5200"}}), "invalid parameter 'location'");
  EXPECT_EQ(errorOf({{"id", "1"}, {"location", "x,13"}}), "invalid parameter 'location'");
  EXPECT_EQ(errorOf({{"id", "1"}, {"location", "91,13"}}), "parameter 'lat' out of range");
}

TEST(Osmand, Flags) {
  Params base{{"id", "1"}, {"lat", "1"}, {"lon", "1"}};
  for (auto [text, want] :
       {std::pair{"true", true}, {"1", true}, {"false", false}, {"0", false}, {"yes", false}}) {
    Params p = base;
    p["valid"] = text;
    p["charge"] = text;
    Position pos = decodeOk(p);
    EXPECT_EQ(pos.valid, want) << text;
    EXPECT_EQ(std::get<bool>(*pos.get("charge")), want) << text;
  }
}

TEST(Osmand, Errors) {
  EXPECT_EQ(errorOf({{"lat", "1"}, {"lon", "2"}}), "parameter 'id' is required");
  EXPECT_EQ(errorOf({{"id", ""}, {"lat", "1"}, {"lon", "2"}}), "parameter 'id' is required");
  EXPECT_EQ(errorOf({{"id", "1"}}), "parameter 'lat' is required");
  EXPECT_EQ(errorOf({{"id", "1"}, {"lon", "2"}}), "parameter 'lat' is required");
  EXPECT_EQ(errorOf({{"id", "1"}, {"lat", "2"}}), "parameter 'lon' is required");
  EXPECT_EQ(errorOf({{"id", "1"}, {"lat", "abc"}, {"lon", "2"}}), "invalid parameter 'lat'");
  EXPECT_EQ(errorOf({{"id", "1"}, {"lat", ""}, {"lon", "2"}}), "invalid parameter 'lat'");
  EXPECT_EQ(errorOf({{"id", "1"}, {"lat", "1"}, {"lon", "2,5"}}), "invalid parameter 'lon'");
  EXPECT_EQ(errorOf({{"id", "1"}, {"lat", "nan"}, {"lon", "2"}}), "invalid parameter 'lat'");
  EXPECT_EQ(errorOf({{"id", "1"}, {"lat", "1"}, {"lon", "inf"}}), "invalid parameter 'lon'");
  EXPECT_EQ(errorOf({{"id", "1"}, {"lat", "1e400"}, {"lon", "2"}}), "invalid parameter 'lat'");
  EXPECT_EQ(errorOf({{"id", "1"}, {"lat", "90.0001"}, {"lon", "2"}}),
            "parameter 'lat' out of range");
  EXPECT_EQ(errorOf({{"id", "1"}, {"lat", "-91"}, {"lon", "2"}}), "parameter 'lat' out of range");
  EXPECT_EQ(errorOf({{"id", "1"}, {"lat", "1"}, {"lon", "180.5"}}), "parameter 'lon' out of range");
  EXPECT_EQ(errorOf({{"id", "1"}, {"lat", "1"}, {"lon", "2"}, {"timestamp", "yesterday"}}),
            "invalid parameter 'timestamp'");
  EXPECT_EQ(errorOf({{"id", "1"}, {"lat", "1"}, {"lon", "2"}, {"speed", "fast"}}),
            "invalid parameter 'speed'");
  EXPECT_EQ(errorOf({{"id", "1"}, {"lat", "1"}, {"lon", "2"}, {"bearing", "N"}}),
            "invalid parameter 'bearing'");
  EXPECT_EQ(errorOf({{"id", "1"}, {"lat", "1"}, {"lon", "2"}, {"altitude", "high"}}),
            "invalid parameter 'altitude'");
  EXPECT_EQ(errorOf({{"id", "1"}, {"lat", "1"}, {"lon", "2"}, {"accuracy", "?"}}),
            "invalid parameter 'accuracy'");
  EXPECT_EQ(errorOf({{"id", "1"}, {"lat", "1"}, {"lon", "2"}, {"hdop", "x"}}),
            "invalid parameter 'hdop'");
  EXPECT_EQ(errorOf({{"id", "1"}, {"lat", "1"}, {"lon", "2"}, {"batt", "full"}}),
            "invalid parameter 'batt'");
  // Boundaries are accepted.
  Position edge = decodeOk({{"id", "1"}, {"lat", "-90"}, {"lon", "180"}});
  EXPECT_DOUBLE_EQ(edge.latitude, -90);
  EXPECT_DOUBLE_EQ(edge.longitude, 180);
}

TEST(Osmand, OddButHarmlessValues) {
  Position p = decodeOk({{"id", "1"},
                         {"lat", "+1.5"},
                         {"lon", " 2.5 "},
                         {"speed", "-1"},
                         {"bearing", "400"},
                         {"note", std::string(300, 'x')}});
  EXPECT_DOUBLE_EQ(p.latitude, 1.5);
  EXPECT_DOUBLE_EQ(p.longitude, 2.5);
  EXPECT_DOUBLE_EQ(p.speedKmh, 0);     // negative speed: unknown
  EXPECT_FALSE(p.course.has_value());  // outside 0..360: unknown
  EXPECT_EQ(p.get("note"), nullptr);   // long free text is not stored
}

TEST(Osmand, TimestampForms) {
  auto at = [](const std::string& text) {
    OsmandResult r =
        decodeOsmand({{"id", "1"}, {"lat", "1"}, {"lon", "1"}, {"timestamp", text}}, kNow);
    EXPECT_EQ(r.error, "") << text;
    return r.position ? r.position->deviceTimeUs : -1;
  };
  const std::int64_t t = utc(2023, 11, 14, 22, 13, 20);   // 1700000000
  EXPECT_EQ(at("1700000000"), t);                         // epoch seconds
  EXPECT_EQ(at("1700000000123"), t + 123'000);            // epoch milliseconds
  EXPECT_EQ(at("2147483646"), 2147483646LL * 1'000'000);  // largest value read as seconds
  EXPECT_EQ(at("2147483647"), 2147483647LL * 1'000);      // from here on milliseconds
  EXPECT_EQ(at("0"), 0);
  EXPECT_EQ(at("1700000000.25"), t + 250'000);  // fractional seconds
  EXPECT_EQ(at("2023-11-14T22:13:20Z"), t);
  EXPECT_EQ(at("2023-11-14T22:13:20.123Z"), t + 123'000);
  EXPECT_EQ(at("2023-11-14T22:13:20.123456789Z"), t + 123'456);
  EXPECT_EQ(at("2023-11-14T22:13:20"), t);             // no zone: UTC
  EXPECT_EQ(at("2023-11-14T22:13Z"), t - 20'000'000);  // no seconds
  EXPECT_EQ(at("2023-11-15T00:13:20+02:00"), t);
  EXPECT_EQ(at("2023-11-15T00:13:20+0200"), t);
  EXPECT_EQ(at("2023-11-15T00:13:20+02"), t);
  EXPECT_EQ(at("2023-11-14T17:13:20-05:00"), t);
  EXPECT_EQ(at("2023-11-15T03:43:20.000+05:30"), t);
  EXPECT_EQ(at("2023-11-15T00:13:20 02:00"), t);  // '+' that arrived unescaped
  EXPECT_EQ(at("2023-11-14 22:13:20"), t);        // "yyyy-MM-dd HH:mm:ss" (UTC)
  EXPECT_EQ(at("2023-11-14 22:13:20.5"), t + 500'000);

  for (std::string bad :
       {"", "-1", "abc", "99999999999999999999", "253402300800000", "2023-13-14T22:13:20Z",
        "2023-11-14T25:13:20Z", "2023-11-14T22:13:20X", "2023-11-14T22:13:20+2",
        "2023-11-14T22:13:20+19:00", "2023/11/14 22:13", "2023-11-14T22:13:20.Z", "1e9"}) {
    OsmandResult r =
        decodeOsmand({{"id", "1"}, {"lat", "1"}, {"lon", "1"}, {"timestamp", bad}}, kNow);
    EXPECT_EQ(r.error, "invalid parameter 'timestamp'") << bad;
  }
}

}  // namespace
}  // namespace tern::codec::trackers
