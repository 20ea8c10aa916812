// Queclink GL200 family: the reference corpus (Traccar's frames), stream splitting, messages
// built with known values, acknowledgements and commands.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "codec/trackers/protocol.h"
#include "codec/trackers/util.h"
#include "frame_corpus.h"
#include "tools/tracker_frames/gl200_encoder.h"

namespace tern::codec::trackers {
namespace {

namespace enc = tools::frames::gl200;

constexpr std::int64_t kServerTime = 1'700'000'000'000'000;

std::unique_ptr<ProtocolCodec> newCodec() {
  const ProtocolInfo* info = findProtocol("gl200");
  EXPECT_NE(info, nullptr);
  return info->create();
}

bool isText(const std::string& frame) {
  return frame.size() > 1 && frame[1] != '\0' && frame.find(":GT") != std::string::npos;
}

// The corpus keeps text frames as Traccar's tests wrote them: 24 lack the trailing '$' the
// device sends. On the wire every text message ends with it.
std::string onTheWire(const test::CorpusFrame& frame) {
  std::string bytes = frame.bytes;
  if (isText(bytes) && bytes.back() != '$') bytes += '$';
  return bytes;
}

void applySetup(const test::CorpusFrame& frame, SessionState& session) {
  if (auto* model = frame.setup.if_contains("device_model"); model && model->is_string()) {
    session.setExtra("model", std::string(model->as_string().c_str()));
  }
}

const AttributeValue* attribute(const Position& p, std::string_view key) {
  return p.get(key);
}

template <class T>
T attributeAs(const Position& p, std::string_view key) {
  const AttributeValue* v = p.get(key);
  if (v == nullptr || !std::holds_alternative<T>(*v)) {
    ADD_FAILURE() << "attribute " << key << " missing or of another type";
    return T{};
  }
  return std::get<T>(*v);
}

// ------------------------------------------------------------------------------------------------
// 1. The whole corpus, one session per Traccar test method, each frame through splitFrame first.

TEST(Gl200Corpus, EveryFrameDecodesAsTraccarExpects) {
  auto frames = test::loadCorpus("gl200");
  ASSERT_EQ(frames.size(), 199u);
  std::map<std::string, std::vector<const test::CorpusFrame*>> groups;
  for (const auto& frame : frames) groups[frame.testMethod].push_back(&frame);
  int passed = 0;
  int checked = 0;
  for (const auto& [method, group] : groups) {
    auto codec = newCodec();
    SessionState session;
    for (const test::CorpusFrame* frame : group) {
      if (frame->disabled) continue;
      ++checked;
      applySetup(*frame, session);
      std::string wire = onTheWire(*frame);
      FrameResult split = codec->splitFrame(wire);
      if (split.status != FrameStatus::kOk || split.size != wire.size()) {
        ADD_FAILURE() << frame->id << ": splitFrame status " << static_cast<int>(split.status)
                      << " size " << split.size << " of " << wire.size();
        continue;
      }
      // Traccar's tests pass the frame as written (with or without '$'); decode it that way.
      DecodeResult result = codec->decode(frame->bytes, session, kServerTime);
      std::string problem =
          test::checkExpectations(*frame, result) + test::checkResponse(*frame, result);
      if (!problem.empty()) {
        ADD_FAILURE() << frame->id << ": " << problem;
        continue;
      }
      // The same bytes as split from the stream decode the same way.
      DecodeResult fromWire = codec->decode(wire.substr(0, split.size), session, kServerTime);
      EXPECT_EQ(fromWire.positions.size(), result.positions.size()) << frame->id;
      EXPECT_EQ(fromWire.response, result.response) << frame->id;
      for (const Position& p : result.positions) {
        EXPECT_EQ(p.protocol, "gl200") << frame->id;
        EXPECT_FALSE(p.deviceId.empty()) << frame->id;
        if (p.hasLocation) {
          EXPECT_GT(p.deviceTimeUs, 0) << frame->id;
        }
      }
      ++passed;
    }
  }
  EXPECT_EQ(passed, checked);
  EXPECT_EQ(checked, 199);
}

// The attribute values Traccar's tests assert, read back directly (types included).
TEST(Gl200Corpus, AssertedValuesHaveTraccarTypes) {
  auto frames = test::loadCorpus("gl200");
  auto codec = newCodec();
  SessionState session;
  std::map<std::string, DecodeResult> decoded;
  for (const auto& frame : frames)
    decoded[frame.id] = codec->decode(frame.bytes, session, kServerTime);
  auto first = [&](const char* id) -> const Position& { return decoded.at(id).positions.at(0); };
  EXPECT_EQ(attributeAs<std::string>(first("gl200-004"), "alarm"), "sos");
  EXPECT_EQ(attributeAs<std::int64_t>(first("gl200-012"), "fuel"), 479);
  EXPECT_EQ(attributeAs<std::string>(first("gl200-017"), "alarm"), "hardCornering");
  EXPECT_DOUBLE_EQ(attributeAs<double>(first("gl200-018"), "adBlueLevel"), 100.0);
  EXPECT_DOUBLE_EQ(attributeAs<double>(first("gl200-019"), "power2"), 13.985);
  EXPECT_EQ(attributeAs<std::int64_t>(first("gl200-030"), "batteryLevel"), 100);
  EXPECT_TRUE(attributeAs<bool>(first("gl200-031"), "ignition"));
  EXPECT_FALSE(attributeAs<bool>(first("gl200-032"), "ignition"));
  EXPECT_DOUBLE_EQ(attributeAs<double>(first("gl200-042"), "accessoryVoltage"), 3.065);
  EXPECT_DOUBLE_EQ(attributeAs<double>(first("gl200-044"), "fuel"), 94.0);
  EXPECT_DOUBLE_EQ(attributeAs<double>(first("gl200-048"), "temp1"), 25.0);
  EXPECT_EQ(attributeAs<std::int64_t>(first("gl200-049"), "warningType"), 4);
  EXPECT_FALSE(attributeAs<bool>(first("gl200-058"), "in1"));
  EXPECT_EQ(attributeAs<std::string>(first("gl200-062"), "alarm"), "powerOff");
  EXPECT_EQ(attributeAs<std::string>(first("gl200-063"), "alarm"), "powerOn");
  EXPECT_DOUBLE_EQ(attributeAs<double>(first("gl200-187"), "power"), 12.349);
  EXPECT_EQ(attributeAs<std::int64_t>(first("gl200-188"), "adc3"), 0);
  EXPECT_EQ(attribute(first("gl200-011"), "batteryLevel"), nullptr);
  // GTFRI with four location blocks: four positions, each with its own fix time.
  const auto& multi = decoded.at("gl200-065").positions;
  ASSERT_EQ(multi.size(), 4u);
  EXPECT_EQ(multi[0].deviceTimeUs, *civilToMicros(2018, 12, 14, 13, 46, 3));
  EXPECT_EQ(multi[3].deviceTimeUs, *civilToMicros(2018, 12, 14, 13, 46, 48));
  EXPECT_NEAR(multi[3].latitude, 47.682040, 1e-9);
  EXPECT_NEAR(multi[3].longitude, 8.612236, 1e-9);
  EXPECT_EQ(attributeAs<std::int64_t>(multi[3], "batteryLevel"), 83);
  // A command acknowledgement is a command answer.
  const DecodeResult& ack = decoded.at("gl200-183");
  ASSERT_TRUE(ack.commandAnswer.has_value());
  EXPECT_EQ(ack.commandAnswer->text,
            "+ACK:GTRTO,1A0800,860599000773978,GL300,VER,FFFF,20161006053520,0C19");
  EXPECT_EQ(attributeAs<std::string>(ack.positions.at(0), "result"), "+ACK:GTRTO");
  // Binary: the legacy IMEI is seven two-digit bytes and a digit; the new format is hex.
  EXPECT_EQ(first("gl200-193").deviceId, "865084030003675");
  EXPECT_EQ(first("gl200-192").deviceId, "865134050947226");
  // Compressed track: 270 records, one full point, 267 deltas, 2 marked invalid (no position).
  EXPECT_EQ(decoded.at("gl200-194").positions.size(), 268u);
}

// ------------------------------------------------------------------------------------------------
// 2. Traccar's frame-decoder cases.

TEST(Gl200Split, FrameDecoderCases) {
  auto cases = test::loadSplitCases("gl200");
  ASSERT_EQ(cases.size(), 4u);
  for (const auto& c : cases) {
    auto codec = newCodec();
    FrameResult r = codec->splitFrame(c.input);
    if (!c.expectedFrame) {
      EXPECT_EQ(r.status, FrameStatus::kNeedMore) << c.source;
      continue;
    }
    ASSERT_EQ(r.status, FrameStatus::kOk) << c.source;
    std::string frame = c.input.substr(0, r.size);
    // Traccar's frame decoder drops the text terminator; ours keeps it in the frame.
    if (isText(frame) && frame.back() == '$') frame.pop_back();
    EXPECT_EQ(toHex(frame), toHex(*c.expectedFrame)) << c.source;
  }
}

// ------------------------------------------------------------------------------------------------
// 3. Streams: byte at a time, coalesced, with garbage, too large.

std::vector<std::string> wireFrames() {
  std::vector<std::string> out;
  for (const auto& frame : test::loadCorpus("gl200")) out.push_back(onTheWire(frame));
  return out;
}

// Splits everything `stream` holds, feeding it `chunk` bytes at a time; returns the frames.
std::vector<std::string> splitStream(const std::string& stream, std::size_t chunk,
                                     std::size_t* skipped = nullptr) {
  auto codec = newCodec();
  std::vector<std::string> frames;
  std::string buffer;
  std::size_t offset = 0;
  while (offset < stream.size()) {
    std::size_t take = std::min(chunk, stream.size() - offset);
    buffer.append(stream, offset, take);
    offset += take;
    while (!buffer.empty()) {
      FrameResult r = codec->splitFrame(buffer);
      if (r.status == FrameStatus::kNeedMore) break;
      if (r.status == FrameStatus::kTooLarge) {
        ADD_FAILURE() << "kTooLarge at stream offset " << offset;
        return frames;
      }
      if (r.size == 0 || r.size > buffer.size()) {
        ADD_FAILURE() << "bad size " << r.size;
        return frames;
      }
      if (r.status == FrameStatus::kOk) {
        frames.push_back(buffer.substr(0, r.size));
      } else if (skipped != nullptr) {
        *skipped += r.size;
      }
      buffer.erase(0, r.size);
    }
  }
  EXPECT_TRUE(buffer.empty()) << "left over: " << buffer.size() << " bytes";
  return frames;
}

TEST(Gl200Split, ByteAtATimeYieldsEveryFrameExactlyWhenComplete) {
  std::vector<std::string> frames = wireFrames();
  auto codec = newCodec();
  std::string buffer;
  std::size_t index = 0;
  for (const std::string& frame : frames) {
    for (std::size_t i = 0; i < frame.size(); ++i) {
      buffer.push_back(frame[i]);
      FrameResult r = codec->splitFrame(buffer);
      if (i + 1 < frame.size()) {
        ASSERT_EQ(r.status, FrameStatus::kNeedMore) << "frame " << index << " byte " << i;
      } else {
        ASSERT_EQ(r.status, FrameStatus::kOk) << "frame " << index;
        ASSERT_EQ(r.size, frame.size()) << "frame " << index;
        EXPECT_EQ(buffer, frame);
        buffer.clear();
      }
    }
    ++index;
  }
  EXPECT_EQ(index, 199u);
}

TEST(Gl200Split, CoalescedAndChunkedStreams) {
  std::vector<std::string> frames = wireFrames();
  std::string stream;
  for (const auto& f : frames) stream += f;
  for (std::size_t chunk : {stream.size(), std::size_t{1}, std::size_t{7}, std::size_t{1000}}) {
    EXPECT_EQ(splitStream(stream, chunk), frames) << "chunk " << chunk;
  }
}

TEST(Gl200Split, GarbageBeforeAndBetweenFramesIsSkipped) {
  std::vector<std::string> frames = wireFrames();
  const std::string garbage[] = {
      std::string("\r\n"),   std::string("hello"), std::string("\x00\x01\x02", 3),
      std::string("$$$"),    std::string("+\x7f"), std::string("+RS"),
      std::string("\0+", 2),
  };
  std::string stream = "GARBAGE";
  std::size_t garbageBytes = 7;
  for (std::size_t i = 0; i < frames.size(); ++i) {
    stream += frames[i];
    const std::string& g = garbage[i % std::size(garbage)];
    stream += g;
    garbageBytes += g.size();
  }
  // The last garbage ("+RS"...) may be a frame start waiting for more bytes: end on a clean frame.
  stream += frames[0];
  std::vector<std::string> expected = frames;
  expected.push_back(frames[0]);
  for (std::size_t chunk : {stream.size(), std::size_t{1}, std::size_t{13}}) {
    std::size_t skipped = 0;
    std::vector<std::string> got = splitStream(stream, chunk, &skipped);
    EXPECT_EQ(got, expected) << "chunk " << chunk;
    EXPECT_EQ(skipped, garbageBytes) << "chunk " << chunk;
  }
}

TEST(Gl200Split, OversizedInputIsRefused) {
  auto codec = newCodec();
  const std::size_t max = findProtocol("gl200")->maxFrameSize;
  // A text message that never ends.
  std::string text = "+RESP:GTFRI," + std::string(max, '1');
  EXPECT_EQ(codec->splitFrame(text).status, FrameStatus::kTooLarge);
  EXPECT_EQ(codec->splitFrame(text.substr(0, max - 1)).status, FrameStatus::kNeedMore);
  // A binary header announcing more than the maximum.
  std::string binary = "+RSP" + std::string(5, '\0') + "\xff\xff";
  EXPECT_EQ(codec->splitFrame(binary).status, FrameStatus::kTooLarge);
  std::string tagged("+\0\x7f\xff", 4);
  EXPECT_EQ(codec->splitFrame(tagged).status, FrameStatus::kTooLarge);
  // An impossible (too small) binary length is not a frame: skipped, not waited for.
  std::string tiny = "+EVT" + std::string(5, '\0') + std::string("\x00\x02", 2);
  FrameResult r = codec->splitFrame(tiny);
  EXPECT_EQ(r.status, FrameStatus::kSkip);
  EXPECT_GE(r.size, 1u);
}

// ------------------------------------------------------------------------------------------------
// 4. Messages with known values.

TEST(Gl200Known, FixedReportWithSeveralBlocks) {
  enc::FriReport report;
  enc::Fix southWest;
  southWest.latitude = -33.524718;
  southWest.longitude = -71.596533;
  southWest.speedKmh = 43.4;
  southWest.course = 160;
  southWest.altitude = 592.2;
  enc::Fix northEast;
  northEast.latitude = 51.515600;
  northEast.longitude = 7.615551;
  northEast.speedKmh = 0.0;
  northEast.course = 0;
  northEast.altitude = -5.4;
  northEast.second = 58;
  northEast.accuracy = 0;  // no fix: the last known position is repeated
  enc::Fix northWest;
  northWest.latitude = 0.000001;
  northWest.longitude = -179.999999;
  northWest.speedKmh = 120.5;
  northWest.course = 359;
  northWest.minute = 4;
  report.fixes = {southWest, northEast, northWest};
  std::string message = enc::encodeFri(report);

  auto codec = newCodec();
  FrameResult split = codec->splitFrame(message + "+RESP");
  ASSERT_EQ(split.status, FrameStatus::kOk);
  ASSERT_EQ(split.size, message.size());
  SessionState session;
  DecodeResult r = codec->decode(message, session, kServerTime);
  EXPECT_EQ(session.deviceId, "862894020180553");
  EXPECT_TRUE(r.response.empty());  // fixed reports are not acknowledged
  ASSERT_EQ(r.positions.size(), 3u);
  for (std::size_t i = 0; i < 3; ++i) {
    const Position& p = r.positions[i];
    const enc::Fix& f = report.fixes[i];
    SCOPED_TRACE(i);
    EXPECT_EQ(p.deviceId, "862894020180553");
    EXPECT_TRUE(p.hasLocation);
    EXPECT_NEAR(p.latitude, f.latitude, 1e-9);
    EXPECT_NEAR(p.longitude, f.longitude, 1e-9);
    EXPECT_EQ(p.deviceTimeUs, *civilToMicros(f.year, f.month, f.day, f.hour, f.minute, f.second));
    EXPECT_NEAR(p.speedKmh, f.speedKmh, 1e-9);
    ASSERT_TRUE(p.course);
    EXPECT_EQ(*p.course, f.course);
    ASSERT_TRUE(p.altitude);
    EXPECT_NEAR(*p.altitude, f.altitude, 1e-9);
    EXPECT_EQ(p.valid, f.accuracy > 0);
    EXPECT_EQ(attributeAs<std::string>(p, "type"), "FRI");
  }
  // The report's own values go to the last position.
  const Position& last = r.positions.back();
  EXPECT_DOUBLE_EQ(attributeAs<double>(last, "power"), 12.345);
  EXPECT_EQ(attributeAs<std::int64_t>(last, "odometer"), 1234500);
  EXPECT_EQ(attributeAs<std::int64_t>(last, "hours"), (123 * 3600 + 45 * 60 + 6) * 1000LL);
  EXPECT_EQ(attributeAs<std::int64_t>(last, "batteryLevel"), 87);
  EXPECT_TRUE(attributeAs<bool>(last, "ignition"));
  EXPECT_EQ(attributeAs<std::int64_t>(last, "input"), 1);
  EXPECT_EQ(attributeAs<std::int64_t>(last, "output"), 0);
  EXPECT_EQ(r.positions.front().get("batteryLevel"), nullptr);
}

TEST(Gl200Known, BufferedReportAndSendTimeWithoutFix) {
  enc::FriReport report;
  report.header = "+BUFF";
  enc::Fix f;
  f.latitude = 22.537178;
  f.longitude = 114.015515;
  report.fixes = {f};
  std::string message = enc::encodeFri(report);
  // Blank the GPS part: the message still yields a position, without location, at the send time.
  std::string block = enc::locationBlock(f);
  std::string noFix = message;
  noFix.replace(noFix.find(block), block.size(), "0,,,,,,,0460,0000,18D8,6141,00");
  auto codec = newCodec();
  SessionState session;
  DecodeResult r = codec->decode(noFix, session, kServerTime);
  ASSERT_EQ(r.positions.size(), 1u);
  EXPECT_FALSE(r.positions[0].hasLocation);
  EXPECT_EQ(r.positions[0].deviceTimeUs, *civilToMicros(2023, 9, 26, 20, 3, 40));
  EXPECT_EQ(attributeAs<std::int64_t>(r.positions[0], "batteryLevel"), 87);
  // With the fix: located, buffered messages decode like live ones.
  r = codec->decode(message, session, kServerTime);
  ASSERT_EQ(r.positions.size(), 1u);
  EXPECT_TRUE(r.positions[0].hasLocation);
  EXPECT_NEAR(r.positions[0].latitude, 22.537178, 1e-9);
}

TEST(Gl200Known, OutOfRangeCoordinatesAreNotALocation) {
  enc::FriReport report;
  enc::Fix f;
  f.latitude = 95.0;  // fits the field's shape, but is no latitude
  f.longitude = 10.0;
  report.fixes = {f};
  auto codec = newCodec();
  SessionState session;
  DecodeResult r = codec->decode(enc::encodeFri(report), session, kServerTime);
  ASSERT_EQ(r.positions.size(), 1u);
  EXPECT_FALSE(r.positions[0].hasLocation);
}

TEST(Gl200Known, HeartbeatIsAcknowledged) {
  auto codec = newCodec();
  SessionState session;
  std::string hbd = enc::encodeHeartbeat("060100", "862894020180553", "0F3C");
  DecodeResult r = codec->decode(hbd, session, kServerTime);
  EXPECT_TRUE(r.positions.empty());
  EXPECT_EQ(r.response, "+SACK:GTHBD,060100,0F3C$");
  EXPECT_EQ(session.deviceId, "862894020180553");
}

TEST(Gl200Known, NulTerminatedTextAndLightSensorReport) {
  auto codec = newCodec();
  SessionState session;
  std::string hbd = enc::encodeHeartbeat("1A0401", "135790246811220", "11F0");
  hbd.back() = '\0';  // some firmware ends messages with NUL instead of '$'
  FrameResult split = codec->splitFrame(hbd + "+RESP");
  ASSERT_EQ(split.status, FrameStatus::kOk);
  EXPECT_EQ(split.size, hbd.size());
  EXPECT_EQ(codec->decode(hbd, session, kServerTime).response, "+SACK:GTHBD,1A0401,11F0$");
  // GTLSA (light sensor): location, then <ber>,<light level>,<battery %>,<mode>,<motion>,<temp>.
  std::string lsa =
      "+RESP:GTLSA,441000,866427030112088,GL50,1,0,1,1,0.0,0,36.0,-0.623089,-51.582744,"
      "20161129174625,0234,0015,03C3,3550,,0,3,85,1,1,-21.5,20161129174626,0026$";
  DecodeResult r = codec->decode(lsa, session, kServerTime);
  ASSERT_EQ(r.positions.size(), 1u);
  const Position& p = r.positions[0];
  EXPECT_NEAR(p.latitude, -51.582744, 1e-9);
  EXPECT_NEAR(p.longitude, -0.623089, 1e-9);
  EXPECT_EQ(p.deviceTimeUs, *civilToMicros(2016, 11, 29, 17, 46, 25));
  EXPECT_EQ(attributeAs<std::int64_t>(p, "lightLevel"), 3);
  EXPECT_EQ(attributeAs<std::int64_t>(p, "batteryLevel"), 85);
  EXPECT_DOUBLE_EQ(attributeAs<double>(p, "temp1"), -21.5);
  EXPECT_EQ(attributeAs<std::string>(p, "type"), "LSA");
}

TEST(Gl200Known, BlanketAcknowledgementWhenConfigured) {
  auto codec = newCodec();
  SessionState session;
  session.setExtra("ack", "true");
  enc::FriReport report;
  report.fixes = {enc::Fix{}};
  report.count = "00AB";
  DecodeResult r = codec->decode(enc::encodeFri(report), session, kServerTime);
  EXPECT_EQ(r.positions.size(), 1u);
  EXPECT_EQ(r.response, "+SACK:00AB$");
  r = codec->decode(enc::encodeHeartbeat("060100", "862894020180553", "0F3C"), session,
                    kServerTime);
  EXPECT_EQ(r.response, "+SACK:GTHBD,060100,0F3C$+SACK:0F3C$");
}

TEST(Gl200Known, RejectedDeviceGetsNothing) {
  auto codec = newCodec();
  SessionState session;
  session.accept = [](const std::string&) { return false; };
  enc::FriReport report;
  report.fixes = {enc::Fix{}};
  DecodeResult r = codec->decode(enc::encodeFri(report), session, kServerTime);
  EXPECT_TRUE(r.positions.empty());
  EXPECT_TRUE(r.response.empty());
  EXPECT_NE(r.note, nullptr);
  r = codec->decode(enc::encodeHeartbeat("060100", "862894020180553", "0F3C"), session,
                    kServerTime);
  EXPECT_TRUE(r.response.empty());
}

TEST(Gl200Known, LegacyBinaryReport) {
  enc::Fix a;
  a.latitude = -34.084002;
  a.longitude = 18.821100;
  a.speedKmh = 22.1;
  a.course = 242;
  a.altitude = 126;
  enc::Fix b;
  b.latitude = 39.611162;
  b.longitude = -9.068048;
  b.speedKmh = 0;
  b.course = 0;
  b.altitude = -12;
  b.accuracy = 0;
  b.second = 59;
  std::string message = enc::encodeBinaryReport("865084030003675", {a, b}, 77, 12586, 9);
  auto codec = newCodec();
  FrameResult split = codec->splitFrame(message + "+RSP");
  ASSERT_EQ(split.status, FrameStatus::kOk);
  ASSERT_EQ(split.size, message.size());
  SessionState session;
  DecodeResult r = codec->decode(message, session, kServerTime);
  EXPECT_TRUE(r.response.empty());
  ASSERT_EQ(r.positions.size(), 2u);
  for (std::size_t i = 0; i < 2; ++i) {
    const Position& p = r.positions[i];
    const enc::Fix& f = i == 0 ? a : b;
    SCOPED_TRACE(i);
    EXPECT_EQ(p.deviceId, "865084030003675");
    EXPECT_NEAR(p.latitude, f.latitude, 1e-9);
    EXPECT_NEAR(p.longitude, f.longitude, 1e-9);
    EXPECT_EQ(p.deviceTimeUs, *civilToMicros(f.year, f.month, f.day, f.hour, f.minute, f.second));
    EXPECT_NEAR(p.speedKmh, f.speedKmh, 1e-9);
    EXPECT_EQ(*p.course, f.course);
    EXPECT_EQ(*p.altitude, f.altitude);
    EXPECT_EQ(p.valid, f.accuracy > 0);
    EXPECT_EQ(*p.satellites, 9);
    EXPECT_EQ(attributeAs<std::int64_t>(p, "batteryLevel"), 77);
    EXPECT_DOUBLE_EQ(attributeAs<double>(p, "power"), 12.586);
  }
}

TEST(Gl200Known, TaggedBinaryReport) {
  enc::Fix f;
  f.latitude = -44.833422;
  f.longitude = -91.543308;
  f.speedKmh = 87.3;
  f.course = 301;
  f.altitude = 434.1;
  f.accuracy = 2;
  std::uint32_t unixTime = 1782503153;
  std::string message = enc::encodeTagged("865134050947226", f, 11, unixTime);
  auto codec = newCodec();
  FrameResult split = codec->splitFrame(message + std::string("+\0", 2));
  ASSERT_EQ(split.status, FrameStatus::kOk);
  ASSERT_EQ(split.size, message.size());
  SessionState session;
  DecodeResult r = codec->decode(message, session, kServerTime);
  ASSERT_EQ(r.positions.size(), 1u);
  const Position& p = r.positions[0];
  EXPECT_EQ(p.deviceId, "865134050947226");
  EXPECT_TRUE(p.valid);
  EXPECT_NEAR(p.latitude, f.latitude, 1e-9);
  EXPECT_NEAR(p.longitude, f.longitude, 1e-9);
  EXPECT_EQ(p.deviceTimeUs, std::int64_t{unixTime} * 1'000'000);
  EXPECT_NEAR(p.speedKmh, 87.3, 1e-9);
  EXPECT_EQ(*p.course, 301);
  EXPECT_NEAR(*p.altitude, 434.1, 1e-9);
  EXPECT_NEAR(*p.hdop, 2.0, 1e-9);
  EXPECT_EQ(*p.satellites, 11);
  EXPECT_TRUE(r.response.empty());
}

TEST(Gl200Known, TruncatedAndCorruptMessagesDoNotDecodeGarbage) {
  auto codec = newCodec();
  SessionState session;
  enc::Fix f;
  f.latitude = 10;
  f.longitude = 20;
  std::string binary = enc::encodeBinaryReport("865084030003675", {f}, 50, 12000, 5);
  for (std::size_t cut = 0; cut < binary.size(); ++cut) {
    DecodeResult r = codec->decode(binary.substr(0, cut), session, kServerTime);
    for (const Position& p : r.positions)
      EXPECT_TRUE(!p.hasLocation || std::fabs(p.latitude - 10) < 1e-9);
  }
  enc::FriReport report;
  report.fixes = {f};
  std::string text = enc::encodeFri(report);
  for (std::size_t cut = 0; cut < text.size(); ++cut) {
    DecodeResult r = codec->decode(text.substr(0, cut), session, kServerTime);
    for (const Position& p : r.positions) {
      if (p.hasLocation) {
        EXPECT_NEAR(p.latitude, 10, 1e-9);
        EXPECT_NEAR(p.longitude, 20, 1e-9);
      }
    }
  }
}

// ------------------------------------------------------------------------------------------------
// 5. Commands and the device's answers.

TEST(Gl200Commands, EncodedBytes) {
  auto codec = newCodec();
  SessionState session;
  session.deviceId = "862894020180553";
  Command stop{CommandType::kEngineStop, "", 1};
  EXPECT_EQ(codec->encodeCommand(stop, session), "AT+GTOUT=gl200,1,,,,,,0,,,,,,,0001$");
  Command resume{CommandType::kEngineResume, "", 0x2A};
  EXPECT_EQ(codec->encodeCommand(resume, session), "AT+GTOUT=gl200,0,,,,,,0,,,,,,,002A$");
  Command locate{CommandType::kPositionSingle, "", 0x1FFFF};  // the serial number keeps 16 bits
  EXPECT_EQ(codec->encodeCommand(locate, session), "AT+GTRTO=gl200,1,,,,,,FFFF$");
  session.setExtra("password", "gv300");
  EXPECT_EQ(codec->encodeCommand(stop, session), "AT+GTOUT=gv300,1,,,,,,0,,,,,,,0001$");
  Command custom{CommandType::kCustom, "AT+GTRTO=gv300,8,,,,,,0003$", 3};
  EXPECT_EQ(codec->encodeCommand(custom, session), "AT+GTRTO=gv300,8,,,,,,0003$");
  Command hex{CommandType::kCustomHex, "41542b475452544f3d$", 1};
  EXPECT_FALSE(codec->encodeCommand(hex, session).has_value());
  hex.text = "41542B4754";
  EXPECT_EQ(codec->encodeCommand(hex, session), "AT+GT");
  EXPECT_FALSE(codec->encodeCommand(Command{CommandType::kCustom, "", 1}, session).has_value());
}

TEST(Gl200Commands, AnswersDecodeIntoCommandAnswer) {
  auto codec = newCodec();
  SessionState session;
  std::string ack = enc::encodeCommandAck("OUT", "862894020180553", "0001");
  ASSERT_EQ(codec->splitFrame(ack).size, ack.size());
  DecodeResult r = codec->decode(ack, session, kServerTime);
  ASSERT_TRUE(r.commandAnswer.has_value());
  EXPECT_EQ(r.commandAnswer->text, "+ACK:GTOUT,060100,862894020180553,,0001,20230926200340,0042");
  ASSERT_EQ(r.positions.size(), 1u);
  EXPECT_FALSE(r.positions[0].hasLocation);
  EXPECT_EQ(attributeAs<std::string>(r.positions[0], "result"), "+ACK:GTOUT");
  EXPECT_EQ(r.positions[0].deviceTimeUs, *civilToMicros(2023, 9, 26, 20, 3, 40));
  EXPECT_TRUE(r.response.empty());
  // The position request is answered by an ack, then a GTRTL position.
  r = codec->decode(enc::encodeCommandAck("RTO", "862894020180553", "0002"), session, kServerTime);
  ASSERT_TRUE(r.commandAnswer.has_value());
  std::string rtl =
      "+RESP:GTRTL,060100,862894020180553,,,00,1,1,4.3,92,70.0,121.354335,31.222073,"
      "20090214013254,0460,0000,18d8,6141,00,2000.0,20090214093254,11F0$";
  r = codec->decode(rtl, session, kServerTime);
  ASSERT_EQ(r.positions.size(), 1u);
  EXPECT_FALSE(r.commandAnswer.has_value());
  EXPECT_NEAR(r.positions[0].latitude, 31.222073, 1e-9);
  EXPECT_EQ(attributeAs<std::int64_t>(r.positions[0], "odometer"), 2000000);
}

TEST(Gl200Session, ModelOverrideChangesTheLayout) {
  // GV350M keeps the fuel value in its accessory list: without the override the version prefix
  // "F1" already says GV350M; declaring another model reads the message another way.
  std::string eri =
      "+RESP:GTERI,F10415,862599050680717,GV350M,00000001,,50,1,1,0.0,274,2963.1,-78.691767,"
      "-0.951295,20250512214226,,,,,,0.0,,,100,210100,,1,1,1,01DF,20250512214226,009D$";
  auto codec = newCodec();
  SessionState session;
  DecodeResult r = codec->decode(eri, session, kServerTime);
  ASSERT_EQ(r.positions.size(), 1u);
  EXPECT_EQ(attributeAs<std::int64_t>(r.positions[0], "fuel"), 479);
  session.setExtra("model", "gv300");
  r = codec->decode(eri, session, kServerTime);
  ASSERT_EQ(r.positions.size(), 1u);
  const AttributeValue* fuel = r.positions[0].get("fuel");
  EXPECT_TRUE(fuel == nullptr || *fuel != AttributeValue{std::int64_t{479}});
}

}  // namespace
}  // namespace tern::codec::trackers
