// The simulator's device frames against Tern's codecs: every frame decodes to the values it was
// built from, and the codec's answer is exactly the one the simulator expects (derived from the
// protocol notes, not from the codecs).
#include "tools/tracker_frames/tracker_frames.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <map>
#include <string>

#include "codec/trackers/osmand/osmand.h"
#include "codec/trackers/protocol.h"
#include "codec/trackers/util.h"

namespace tern::tools {
namespace {

namespace trk = codec::trackers;

constexpr std::uint64_t kImei = 356307042441013;

std::int64_t nowUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

DeviceFix sampleFix(bool ignition, bool south) {
  DeviceFix f;
  f.timeUs = (nowUs() / 1'000'000 - 30) * 1'000'000;
  f.latitude = south ? -33.868820 : 52.520008;
  f.longitude = south ? -151.209296 : 13.404954;  // west, to check the hemisphere too
  f.altitude = 42;
  f.speedKmh = ignition ? 64 : 0;
  f.course = 137;
  f.satellites = 9;
  f.valid = true;
  f.ignition = ignition;
  f.odometerM = 123'400;
  return f;
}

std::optional<std::int64_t> intAttr(const trk::Position& p, std::string_view key) {
  const trk::AttributeValue* v = p.get(key);
  if (v == nullptr) return std::nullopt;
  if (const auto* i = std::get_if<std::int64_t>(v)) return *i;
  if (const auto* d = std::get_if<double>(v)) return static_cast<std::int64_t>(std::llround(*d));
  if (const auto* b = std::get_if<bool>(v)) return *b ? 1 : 0;
  return std::nullopt;
}

// What each protocol carries: resolution of time, position, speed; whether it has the rest.
struct Carries {
  std::int64_t timeToleranceUs = 0;
  double degreeTolerance = 2e-6;
  double speedTolerance = 1.0;  // km/h
  bool altitude = false;
  bool satellites = false;
  bool ignition = true;
  std::optional<std::int64_t> odometerTolerance;  // m; nullopt when not carried
};

Carries carriesFor(std::string_view protocol) {
  Carries c;
  if (protocol == "gt06") {
    c.satellites = true;
  } else if (protocol == "teltonika") {
    c.degreeTolerance = 1e-7;
    c.altitude = c.satellites = true;
    c.odometerTolerance = 0;
  } else if (protocol == "h02") {
    c.degreeTolerance = 2e-6;
    c.speedTolerance = 0.05;
  } else if (protocol == "tk103") {
    c.speedTolerance = 0.05;
    c.odometerTolerance = 0;
  } else if (protocol == "gps103") {
    c.speedTolerance = 0.05;
    c.altitude = true;
  } else if (protocol == "gl200") {
    c.degreeTolerance = 1e-6;
    c.speedTolerance = 0.05;
    c.altitude = true;
    c.odometerTolerance = 50;  // km with one decimal
  } else if (protocol == "meitrack") {
    c.degreeTolerance = 1e-6;
    c.altitude = c.satellites = true;
    c.ignition = false;  // an input bit whose meaning depends on the model
    c.odometerTolerance = 0;
  } else if (protocol == "ruptela") {
    c.degreeTolerance = 1e-7;
    c.altitude = c.satellites = true;
    c.odometerTolerance = 0;
  } else if (protocol == "osmand") {
    c.degreeTolerance = 1e-6;
    c.speedTolerance = 0.05;
    c.altitude = true;
    c.odometerTolerance = 0;
  }
  return c;
}

void expectPosition(std::string_view protocol, const trk::Position& p, const DeviceFix& f,
                    const std::string& deviceId) {
  const Carries c = carriesFor(protocol);
  SCOPED_TRACE(std::string(protocol));
  EXPECT_EQ(p.deviceId, deviceId);
  EXPECT_TRUE(p.hasLocation);
  EXPECT_TRUE(p.valid);
  EXPECT_NEAR(static_cast<double>(p.deviceTimeUs), static_cast<double>(f.timeUs),
              static_cast<double>(c.timeToleranceUs));
  EXPECT_NEAR(p.latitude, f.latitude, c.degreeTolerance);
  EXPECT_NEAR(p.longitude, f.longitude, c.degreeTolerance);
  EXPECT_NEAR(p.speedKmh, f.speedKmh, c.speedTolerance);
  ASSERT_TRUE(p.course.has_value());
  EXPECT_NEAR(*p.course, f.course, 0.5);
  if (c.altitude) {
    ASSERT_TRUE(p.altitude.has_value());
    EXPECT_NEAR(*p.altitude, f.altitude, 0.5);
  }
  if (c.satellites) {
    ASSERT_TRUE(p.satellites || intAttr(p, "sat"));
    EXPECT_EQ(p.satellites ? *p.satellites : *intAttr(p, "sat"), f.satellites);
  }
  if (c.ignition) {
    EXPECT_EQ(intAttr(p, trk::attr::kIgnition), f.ignition ? 1 : 0);
  }
  if (c.odometerTolerance) {
    auto odometer = intAttr(p, trk::attr::kOdometer);
    ASSERT_TRUE(odometer.has_value());
    EXPECT_NEAR(static_cast<double>(*odometer), static_cast<double>(f.odometerM),
                static_cast<double>(*c.odometerTolerance));
  }
}

// Runs one frame through the codec exactly as a connection does: split, then decode.
trk::DecodeResult decodeOne(trk::ProtocolCodec& codec, trk::SessionState& session,
                            const std::string& bytes) {
  trk::FrameResult split = codec.splitFrame(bytes);
  EXPECT_EQ(split.status, trk::FrameStatus::kOk) << trk::toHex(bytes);
  EXPECT_EQ(split.size, bytes.size()) << trk::toHex(bytes);
  return codec.decode(std::string_view(bytes).substr(0, split.size), session, nowUs());
}

void expectAnswer(const TrackerFrame& frame, const std::string& response) {
  if (frame.ack.kind == AckKind::kNone) {
    EXPECT_EQ(response, "") << "no answer expected to " << frame.bytes;
    return;
  }
  std::size_t consumed = 0;
  EXPECT_EQ(matchAck(frame.ack, response, nowUs(), consumed), AckMatch::kMatch)
      << "expected " << trk::toHex(frame.ack.bytes) << " got " << trk::toHex(response) << " ("
      << response << ")";
  EXPECT_EQ(consumed, response.size());
}

class TcpProtocolFrames : public ::testing::TestWithParam<std::string> {};

TEST_P(TcpProtocolFrames, LoginPositionsHeartbeatDecodeAndAreAnsweredAsExpected) {
  const std::string protocol = GetParam();
  const trk::ProtocolInfo* info = trk::findProtocol(protocol);
  ASSERT_NE(info, nullptr);
  EXPECT_EQ(trackerDefaultPort(protocol), info->defaultPort);
  auto encoder = makeTrackerEncoder(protocol, kImei);
  ASSERT_NE(encoder, nullptr);
  auto codec = info->create();
  trk::SessionState session;

  if (auto login = encoder->login()) {
    EXPECT_EQ(login->kind, FrameKind::kLogin);
    trk::DecodeResult r = decodeOne(*codec, session, login->bytes);
    EXPECT_EQ(r.positions.size(), login->records);
    expectAnswer(*login, r.response);
    EXPECT_EQ(session.deviceId, encoder->deviceId());
  }
  for (bool south : {false, true}) {
    for (bool ignition : {true, false}) {
      const DeviceFix fix = sampleFix(ignition, south);
      TrackerFrame position = encoder->position(fix);
      EXPECT_EQ(position.kind, FrameKind::kPosition);
      trk::DecodeResult r = decodeOne(*codec, session, position.bytes);
      ASSERT_EQ(r.positions.size(), 1u) << position.bytes << " " << (r.note ? r.note : "");
      EXPECT_EQ(position.records, 1u);
      expectPosition(protocol, r.positions[0], fix, encoder->deviceId());
      expectAnswer(position, r.response);
    }
  }
  if (auto heartbeat = encoder->heartbeat()) {
    EXPECT_EQ(heartbeat->kind, FrameKind::kHeartbeat);
    trk::DecodeResult r = decodeOne(*codec, session, heartbeat->bytes);
    EXPECT_EQ(r.positions.size(), heartbeat->records) << (r.note ? r.note : "");
    expectAnswer(*heartbeat, r.response);
    // A second heartbeat gets its own answer (serials and count numbers move on).
    auto again = encoder->heartbeat();
    ASSERT_TRUE(again.has_value());
    expectAnswer(*again, decodeOne(*codec, session, again->bytes).response);
  }
}

INSTANTIATE_TEST_SUITE_P(TrackerFrames, TcpProtocolFrames,
                         ::testing::Values("gt06", "teltonika", "h02", "tk103", "gps103", "gl200",
                                           "meitrack", "ruptela"),
                         [](const auto& param) { return param.param; });

// Percent-decoding is not needed: the simulator's values are plain numbers and words.
std::map<std::string, std::string> queryParams(const std::string& request) {
  std::map<std::string, std::string> params;
  const std::size_t start = request.find("/?") + 2;
  const std::size_t end = request.find(' ', start);
  std::string query = request.substr(start, end - start);
  std::size_t pos = 0;
  while (pos <= query.size()) {
    std::size_t amp = query.find('&', pos);
    if (amp == std::string::npos) amp = query.size();
    std::string pair = query.substr(pos, amp - pos);
    std::size_t eq = pair.find('=');
    if (eq != std::string::npos) params[pair.substr(0, eq)] = pair.substr(eq + 1);
    pos = amp + 1;
  }
  return params;
}

TEST(TrackerFramesTest, OsmandRequestDecodesAndExpectsA200) {
  auto encoder = makeTrackerEncoder("osmand", kImei);
  ASSERT_NE(encoder, nullptr);
  EXPECT_FALSE(encoder->login());
  EXPECT_FALSE(encoder->heartbeat());
  EXPECT_EQ(trackerDefaultPort("osmand"), 5055);
  for (bool ignition : {true, false}) {
    const DeviceFix fix = sampleFix(ignition, !ignition);
    TrackerFrame frame = encoder->position(fix);
    ASSERT_EQ(frame.bytes.rfind("GET /?", 0), 0u);
    ASSERT_NE(frame.bytes.find(" HTTP/1.1\r\n"), std::string::npos);
    EXPECT_EQ(frame.bytes.substr(frame.bytes.size() - 4), "\r\n\r\n");
    trk::OsmandResult r = trk::decodeOsmand(queryParams(frame.bytes), nowUs());
    ASSERT_TRUE(r.position.has_value()) << r.error;
    expectPosition("osmand", *r.position, fix, encoder->deviceId());
    EXPECT_EQ(frame.ack.kind, AckKind::kHttpOk);
  }
}

TEST(TrackerFramesTest, MatchAckExactTimeStampedAndHttp) {
  std::size_t consumed = 0;
  ExpectedAck exact{AckKind::kExact, "LOAD", {}};
  EXPECT_EQ(matchAck(exact, "LO", 0, consumed), AckMatch::kNeedMore);
  EXPECT_EQ(matchAck(exact, "LOADON", 0, consumed), AckMatch::kMatch);
  EXPECT_EQ(consumed, 4u);
  EXPECT_EQ(matchAck(exact, "LX", 0, consumed), AckMatch::kMismatch);

  // 2023-11-14 22:13:20 UTC.
  const std::int64_t now = 1'700'000'000'000'000;
  ExpectedAck stamped{AckKind::kTimeStamped, "*HQ,1,V4,V1,", "#"};
  EXPECT_EQ(matchAck(stamped, "*HQ,1,V4,V1,2023111422", now, consumed), AckMatch::kNeedMore);
  EXPECT_EQ(matchAck(stamped, "*HQ,1,V4,V1,20231114221321#", now, consumed), AckMatch::kMatch);
  EXPECT_EQ(consumed, 27u);
  EXPECT_EQ(matchAck(stamped, "*HQ,1,V4,V1,20231114231321#", now, consumed), AckMatch::kMismatch)
      << "an hour off is not the server's clock";
  EXPECT_EQ(matchAck(stamped, "*HQ,2,", now, consumed), AckMatch::kMismatch);

  ExpectedAck http{AckKind::kHttpOk, {}, {}};
  const std::string ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1";
  EXPECT_EQ(matchAck(http, ok.substr(0, 20), 0, consumed), AckMatch::kNeedMore);
  EXPECT_EQ(matchAck(http, ok, 0, consumed), AckMatch::kMatch);
  EXPECT_EQ(consumed, ok.size() - 8);
  EXPECT_EQ(matchAck(http, "HTTP/1.1 400 Bad Request\r\n\r\n", 0, consumed), AckMatch::kMismatch);
}

// The documented example answers, byte for byte.
TEST(TrackerFramesTest, KnownAnswersFromTheProtocolNotes) {
  // Ruptela identification → 00 02 73 01 CB 25.
  auto ruptela = makeTrackerEncoder("ruptela", 869530043209218);
  EXPECT_EQ(trk::toHex(ruptela->login()->ack.bytes), "00027301cb25");
  EXPECT_EQ(trk::toHex(ruptela->position(sampleFix(true, false)).ack.bytes), "0002640113bc");
  // Meitrack AAC → @@z27,<imei>,AAC,1*0B.
  auto meitrack = makeTrackerEncoder("meitrack", 861451040910625);
  EXPECT_EQ(meitrack->login()->ack.bytes, "@@z27,861451040910625,AAC,1*0B\r\n");
  // Teltonika IMEI → 01.
  EXPECT_EQ(makeTrackerEncoder("teltonika", kImei)->login()->ack.bytes, std::string(1, '\x01'));
}

TEST(TrackerFramesTest, CivilFromMicros) {
  CivilTime t = civilFromMicros(1'709'251'198'000'000);  // 2024-02-29 23:59:58 UTC
  EXPECT_EQ(t.year, 2024);
  EXPECT_EQ(t.month, 2);
  EXPECT_EQ(t.day, 29);
  EXPECT_EQ(t.hour, 23);
  EXPECT_EQ(t.minute, 59);
  EXPECT_EQ(t.second, 58);
  EXPECT_EQ(makeTrackerEncoder("nope", kImei), nullptr);
  EXPECT_EQ(simTrackerProtocols().size(), 9u);
}

}  // namespace
}  // namespace tern::tools
