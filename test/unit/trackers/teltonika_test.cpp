// Teltonika: the reference corpus (Traccar's test frames), stream splitting, frames encoded from
// known values, commands and command answers.
#include <gtest/gtest.h>

#include <map>

#include "codec/trackers/protocol.h"
#include "codec/trackers/util.h"
#include "frame_corpus.h"
#include "tools/tracker_frames/teltonika_encoder.h"

namespace tern::codec::trackers {
namespace {

namespace enc = tern::tools::frames::teltonika;
using test::CorpusFrame;

constexpr std::int64_t kNow = 1'700'000'000'000'000;  // 2023-11-14 22:13:20 UTC

std::unique_ptr<ProtocolCodec> makeCodec() {
  return findProtocol("teltonika")->create();
}

std::string hex(std::string_view s) {
  return toHex(s);
}
std::string unhex(std::string_view s) {
  return *fromHex(s);
}

// The size the frame's own length field announces (AVL packets), or nullopt for IMEI packets
// and pings. Traccar's tests feed some frames whose DATA_LEN contradicts their real size.
std::optional<std::size_t> declaredSize(const std::string& bytes) {
  if (bytes.size() < 8 || bytes.compare(0, 4, std::string(4, '\0')) != 0) return std::nullopt;
  ByteReader r(std::string_view(bytes).substr(4));
  return std::size_t{r.u32()} + 12;
}

bool lengthConsistent(const CorpusFrame& f) {
  auto declared = declaredSize(f.bytes);
  return !declared || *declared == f.bytes.size();
}

void applySetup(const CorpusFrame& f, SessionState& session) {
  if (auto* model = f.setup.if_contains("device_model")) {
    session.setExtra("model", std::string(model->as_string().c_str()));
  }
  if (auto* extended = f.setup.if_contains("extended"); extended && extended->as_bool()) {
    session.setExtra("extended", "true");
  }
}

std::vector<std::vector<CorpusFrame>> groupsByMethod(const std::vector<CorpusFrame>& frames) {
  std::vector<std::vector<CorpusFrame>> groups;
  std::map<std::string, std::size_t> index;
  for (const auto& f : frames) {
    if (f.disabled) continue;
    auto [it, inserted] = index.emplace(f.testMethod, groups.size());
    if (inserted) groups.emplace_back();
    groups[it->second].push_back(f);
  }
  return groups;
}

TEST(Teltonika, MaxFrameSizeMatchesRegistry) {
  const ProtocolInfo* info = findProtocol("teltonika");
  ASSERT_NE(info, nullptr);
  EXPECT_EQ(info->maxFrameSize, 64u * 1024u);
  EXPECT_EQ(info->defaultPort, 5027);
}

TEST(Teltonika, Corpus) {
  auto frames = test::loadCorpus("teltonika");
  ASSERT_EQ(frames.size(), 52u);
  std::size_t checked = 0;
  std::size_t odd = 0;
  for (const auto& group : groupsByMethod(frames)) {
    auto codec = makeCodec();
    SessionState session;  // accepts every device
    for (const auto& f : group) {
      applySetup(f, session);
      FrameResult split = codec->splitFrame(f.bytes);
      if (lengthConsistent(f)) {
        EXPECT_EQ(split.status, FrameStatus::kOk) << f.id;
        EXPECT_EQ(split.size, f.bytes.size()) << f.id;
      } else {
        // The length field is wrong in the test frame itself: the splitter follows the field
        // (as Traccar's frame decoder does); the frame is then decoded whole, as Traccar's test
        // does, and flagged.
        ++odd;
        std::size_t declared = *declaredSize(f.bytes);
        if (declared < f.bytes.size()) {
          EXPECT_EQ(split.status, FrameStatus::kOk) << f.id;
          EXPECT_EQ(split.size, declared) << f.id;
        } else {
          EXPECT_EQ(split.status, FrameStatus::kNeedMore) << f.id;
        }
      }
      DecodeResult result = codec->decode(f.bytes, session, kNow);
      EXPECT_EQ(test::checkExpectations(f, result), "") << f.id;
      EXPECT_EQ(test::checkResponse(f, result), "") << f.id;
      if (!lengthConsistent(f)) {
        EXPECT_TRUE(result.badLength) << f.id;
      }
      ++checked;
    }
  }
  EXPECT_EQ(checked, 51u);  // all but the @Disabled UDP frame
  EXPECT_EQ(odd, 4u);
}

TEST(Teltonika, CorpusDetails) {
  auto frames = test::loadCorpus("teltonika");
  std::map<std::string, CorpusFrame> byId;
  for (auto& f : frames) byId[f.id] = f;
  auto decodeWithLogin = [&](const std::string& id, const char* model = nullptr) {
    auto codec = makeCodec();
    SessionState session;
    if (model != nullptr) session.setExtra("model", model);
    EXPECT_EQ(hex(codec->decode(enc::imeiPacket("123456789012345"), session, kNow).response), "01");
    return codec->decode(byId.at(id).bytes, session, kNow);
  };
  // A codec 8 record whose fields were read by hand (teltonika-039): time 0x140d4e3ec6e ms,
  // lon 0x0cc661d0, lat 0x1674a5e0 (1e-7 degrees), 9 satellites.
  DecodeResult r = decodeWithLogin("teltonika-039");
  ASSERT_EQ(r.positions.size(), 1u);
  const Position& p = r.positions[0];
  EXPECT_EQ(p.deviceTimeUs, std::int64_t{0x00000140d4e3ec6e} * 1000);
  EXPECT_NEAR(p.longitude, 0x0cc661d0 / 1e7, 1e-9);
  EXPECT_NEAR(p.latitude, 0x1674a5e0 / 1e7, 1e-9);
  EXPECT_EQ(p.satellites, 9);
  EXPECT_TRUE(p.valid);
  EXPECT_EQ(p.deviceId, "123456789012345");
  EXPECT_EQ(p.protocol, "teltonika");
  EXPECT_FALSE(r.badChecksum);

  // Codec 12 answers become the command answer and the "result" attribute.
  r = decodeWithLogin("teltonika-040");
  ASSERT_TRUE(r.commandAnswer);
  EXPECT_EQ(r.commandAnswer->text, "#FM2=262032761721396,26203,07.02.05");
  ASSERT_EQ(r.positions.size(), 1u);
  EXPECT_FALSE(r.positions[0].hasLocation);
  EXPECT_EQ(std::get<std::string>(*r.positions[0].get("result")),
            "#FM2=262032761721396,26203,07.02.05");
  EXPECT_TRUE(r.response.empty());

  // Binary serial data → hex.
  r = decodeWithLogin("teltonika-018");
  ASSERT_TRUE(r.commandAnswer);
  EXPECT_EQ(r.commandAnswer->text, "010300010015d5c5");

  // Axle weights over RS232.
  r = decodeWithLogin("teltonika-017");
  ASSERT_EQ(r.positions.size(), 1u);
  EXPECT_DOUBLE_EQ(std::get<double>(*r.positions[0].get("axle1")), 6.4);
  EXPECT_DOUBLE_EQ(std::get<double>(*r.positions[0].get("totalTruck")), 10.7);

  // Codec 13 carries the device time.
  r = decodeWithLogin("teltonika-006");
  ASSERT_EQ(r.positions.size(), 1u);
  EXPECT_EQ(r.positions[0].deviceTimeUs, std::int64_t{0x642b3ad1} * 1'000'000);
  EXPECT_EQ(std::get<std::string>(*r.positions[0].get("driverUniqueId")), "12749884");
  r = decodeWithLogin("teltonika-015");
  ASSERT_EQ(r.positions.size(), 1u);
  EXPECT_TRUE(r.badChecksum);  // the corpus marks this frame's CRC wrong

  // Old firmware with "extended" records (a 16-byte group after the 8-byte one).
  {
    auto codec = makeCodec();
    SessionState session;
    session.setExtra("extended", "true");
    codec->decode(enc::imeiPacket("123456789012345"), session, kNow);
    r = codec->decode(byId.at("teltonika-047").bytes, session, kNow);
    ASSERT_EQ(r.positions.size(), 11u);
    EXPECT_EQ(std::get<std::string>(*r.positions[0].get("io203")), std::string(32, '0'));
    EXPECT_TRUE(r.positions[0].hasLocation);
  }

  // FMB model mapping: EYE temperature and the common ids.
  r = decodeWithLogin("teltonika-045", "FMB130");
  ASSERT_EQ(r.positions.size(), 1u);
  EXPECT_DOUBLE_EQ(std::get<double>(*r.positions[0].get("eyeTemp1")), -11.87);
  EXPECT_EQ(std::get<bool>(*r.positions[0].get("ignition")), false);
  // Without the model the id stays raw.
  r = decodeWithLogin("teltonika-045");
  EXPECT_EQ(r.positions[0].get("eyeTemp1"), nullptr);
  EXPECT_NE(r.positions[0].get("io10800"), nullptr);

  // GH3000 (codec 7) records carry float coordinates.
  r = decodeWithLogin("teltonika-038");
  ASSERT_EQ(r.positions.size(), 2u);
  EXPECT_TRUE(r.positions[0].hasLocation);
  EXPECT_EQ(hex(r.response), "00000002");
}

TEST(Teltonika, SplitCases) {
  auto cases = test::loadSplitCases("teltonika");
  ASSERT_EQ(cases.size(), 2u);
  for (const auto& c : cases) {
    auto codec = makeCodec();
    FrameResult split = codec->splitFrame(c.input);
    if (!c.expectedFrame) {
      EXPECT_EQ(split.status, FrameStatus::kNeedMore) << c.source;
      continue;
    }
    ASSERT_EQ(split.status, FrameStatus::kOk) << c.source;
    EXPECT_EQ(hex(c.input.substr(0, split.size)), hex(*c.expectedFrame)) << c.source;
  }
}

// The corpus frames that are whole and unambiguous on a stream, in order.
std::vector<std::string> streamFrames() {
  std::vector<std::string> out;
  for (const auto& f : test::loadCorpus("teltonika")) {
    // The @Disabled frame is a UDP datagram; four frames carry a DATA_LEN that contradicts
    // their size, so no stream splitter could return them whole.
    if (f.disabled || !lengthConsistent(f)) continue;
    out.push_back(f.bytes);
  }
  return out;
}

// Splits `stream` completely; every status must be kOk.
std::vector<std::string> splitAll(ProtocolCodec& codec, std::string_view stream,
                                  std::size_t* skipped = nullptr) {
  std::vector<std::string> out;
  while (!stream.empty()) {
    FrameResult r = codec.splitFrame(stream);
    if (r.status == FrameStatus::kSkip) {
      EXPECT_GT(r.size, 0u);
      if (skipped != nullptr) *skipped += r.size;
      stream.remove_prefix(r.size);
      continue;
    }
    if (r.status != FrameStatus::kOk) {
      ADD_FAILURE() << "status " << static_cast<int>(r.status) << " with " << stream.size()
                    << " bytes left";
      break;
    }
    out.emplace_back(stream.substr(0, r.size));
    stream.remove_prefix(r.size);
  }
  return out;
}

TEST(Teltonika, ByteAtATime) {
  auto frames = streamFrames();
  ASSERT_EQ(frames.size(), 47u);
  auto codec = makeCodec();
  std::string buffer;
  std::size_t next = 0;
  for (const auto& f : frames) {
    for (std::size_t i = 0; i < f.size(); ++i) {
      buffer.push_back(f[i]);
      FrameResult r = codec->splitFrame(buffer);
      if (i + 1 < f.size()) {
        ASSERT_EQ(r.status, FrameStatus::kNeedMore) << "frame " << next << " byte " << i;
      } else {
        ASSERT_EQ(r.status, FrameStatus::kOk) << "frame " << next;
        ASSERT_EQ(r.size, buffer.size()) << "frame " << next;
        EXPECT_EQ(hex(buffer), hex(f));
        buffer.clear();
      }
    }
    ++next;
  }
}

TEST(Teltonika, CoalescedAndGarbage) {
  auto frames = streamFrames();
  std::string all;
  for (const auto& f : frames) all += f;
  auto codec = makeCodec();
  auto out = splitAll(*codec, all);
  ASSERT_EQ(out.size(), frames.size());
  for (std::size_t i = 0; i < out.size(); ++i) EXPECT_EQ(hex(out[i]), hex(frames[i])) << i;

  // Garbage before and between frames: skipped, then every frame is still found.
  const std::string garbage[] = {"GET / HTTP/1.1\r\n", std::string("\x01\x02\x03\xAB", 4),
                                 std::string("\x00\x01x", 3), std::string("\x00\x00\x12\x34", 4),
                                 std::string("\x00\x00\x00\x00\x00\x00\x00\x10\x55", 9)};
  std::string noisy;
  std::size_t garbageBytes = 0;
  for (std::size_t i = 0; i < frames.size(); ++i) {
    const std::string& g = garbage[i % std::size(garbage)];
    noisy += g;
    garbageBytes += g.size();
    noisy += frames[i];
  }
  std::size_t skipped = 0;
  out = splitAll(*codec, noisy, &skipped);
  ASSERT_EQ(out.size(), frames.size());
  for (std::size_t i = 0; i < out.size(); ++i) EXPECT_EQ(hex(out[i]), hex(frames[i])) << i;
  EXPECT_EQ(skipped, garbageBytes);
}

TEST(Teltonika, TooLarge) {
  auto codec = makeCodec();
  // DATA_LEN of 1 MiB with a plausible codec byte.
  std::string head = unhex(
      "0000000000100000"
      "08");
  EXPECT_EQ(codec->splitFrame(head).status, FrameStatus::kTooLarge);
  // Just inside the limit: waits for the rest.
  std::string fits = unhex(
      "000000000000fff4"
      "08");
  EXPECT_EQ(codec->splitFrame(fits).status, FrameStatus::kNeedMore);
  std::string over = unhex(
      "000000000000fff5"
      "08");
  EXPECT_EQ(codec->splitFrame(over).status, FrameStatus::kTooLarge);
}

TEST(Teltonika, LoginAndSessions) {
  auto codec = makeCodec();
  SessionState session;
  session.accept = [](const std::string& id) { return id == "356307042441013"; };
  enc::Record rec;
  rec.timeMs = 1'600'000'000'000;
  rec.satellites = 5;
  std::string avl = enc::encodeAvl(0x08, {rec});

  // Data before the IMEI packet: dropped without an answer.
  DecodeResult r = codec->decode(avl, session, kNow);
  EXPECT_TRUE(r.positions.empty());
  EXPECT_TRUE(r.response.empty());

  r = codec->decode(enc::imeiPacket("111111111111111"), session, kNow);
  EXPECT_EQ(hex(r.response), "00");
  EXPECT_FALSE(session.identified());
  r = codec->decode(avl, session, kNow);
  EXPECT_TRUE(r.positions.empty());
  EXPECT_TRUE(r.response.empty());

  r = codec->decode(enc::imeiPacket("356307042441013"), session, kNow);
  EXPECT_EQ(hex(r.response), "01");
  EXPECT_EQ(session.deviceId, "356307042441013");
  r = codec->decode(avl, session, kNow);
  ASSERT_EQ(r.positions.size(), 1u);
  EXPECT_EQ(hex(r.response), "00000001");
  EXPECT_EQ(r.positions[0].deviceId, "356307042441013");

  // Not an IMEI (a UDP datagram sent to the TCP port): refused, session unchanged.
  r = codec->decode(unhex("0049cafe0122000f3335"), session, kNow);
  EXPECT_EQ(hex(r.response), "00");
  EXPECT_EQ(session.deviceId, "356307042441013");

  // Ping: nothing.
  r = codec->decode(std::string("\xFF", 1), session, kNow);
  EXPECT_TRUE(r.positions.empty());
  EXPECT_TRUE(r.response.empty());
}

TEST(Teltonika, KnownValuesAllCodecs) {
  std::vector<enc::Record> records(3);
  records[0].timeMs = 1'700'000'123'456;  // 2023-11-14 22:15:23.456 UTC
  records[0].latitude = -33.8688197;      // Sydney: south, east
  records[0].longitude = 151.2092955;
  records[0].altitude = -12;
  records[0].angle = 271;
  records[0].satellites = 11;
  records[0].speedKmh = 87;
  records[0].priority = 1;
  records[0].eventId = 239;
  records[0].io = {
      {239, enc::be(1, 1)},    {240, enc::be(1, 1)},   {21, enc::be(4, 1)},
      {66, enc::be(12650, 2)}, {67, enc::be(4050, 2)}, {16, enc::be(123456789, 4)},
      {181, enc::be(12, 2)},   {182, enc::be(9, 2)},   {200, enc::be(0x0102030405060708, 8)}};
  records[1].timeMs = 946'684'800'000;  // 2000-01-01
  records[1].latitude = 40.7127753;     // New York: north, west
  records[1].longitude = -74.0059728;
  records[1].angle = 360;
  records[1].satellites = 0;  // last known fix
  records[1].speedKmh = 0;
  records[2].timeMs = 1'262'304'000'000;
  records[2].latitude = -22.9068467;  // Rio: south, west
  records[2].longitude = -43.1728965;
  records[2].angle = 0;
  records[2].satellites = 4;
  records[2].speedKmh = 250;
  records[2].io = {{253, enc::be(2, 1)}, {78, enc::be(0x00000012AB34CD01ULL, 8)}};

  for (std::uint8_t codecId : {std::uint8_t{0x08}, std::uint8_t{0x8E}, std::uint8_t{0x10}}) {
    SCOPED_TRACE(static_cast<int>(codecId));
    auto codec = makeCodec();
    SessionState session;
    ASSERT_EQ(hex(codec->decode(enc::imeiPacket("352093081452251"), session, kNow).response), "01");
    auto recs = records;
    if (codecId == 0x8E) recs[1].variableIo = {{256, "WVWZZZ1JZXW000001"}};
    std::string frame = enc::encodeAvl(codecId, recs);
    FrameResult split = codec->splitFrame(frame);
    ASSERT_EQ(split.status, FrameStatus::kOk);
    ASSERT_EQ(split.size, frame.size());
    DecodeResult r = codec->decode(frame, session, kNow);
    EXPECT_FALSE(r.badChecksum);
    EXPECT_FALSE(r.badLength);
    EXPECT_EQ(hex(r.response), "00000003");
    ASSERT_EQ(r.positions.size(), 3u);
    for (std::size_t i = 0; i < 3; ++i) {
      const Position& p = r.positions[i];
      EXPECT_EQ(p.deviceTimeUs, static_cast<std::int64_t>(recs[i].timeMs) * 1000) << i;
      EXPECT_NEAR(p.latitude, recs[i].latitude, 1e-7) << i;
      EXPECT_NEAR(p.longitude, recs[i].longitude, 1e-7) << i;
      EXPECT_EQ(p.speedKmh, recs[i].speedKmh) << i;
      ASSERT_TRUE(p.course) << i;
      EXPECT_EQ(*p.course, recs[i].angle) << i;
      EXPECT_EQ(p.altitude, recs[i].altitude) << i;
      EXPECT_EQ(p.satellites, recs[i].satellites) << i;
      EXPECT_EQ(p.valid, recs[i].satellites != 0) << i;
      EXPECT_TRUE(p.hasLocation) << i;
    }
    const Position& p = r.positions[0];
    EXPECT_EQ(std::get<std::int64_t>(*p.get("priority")), 1);
    EXPECT_EQ(std::get<std::int64_t>(*p.get("event")), 239);
    EXPECT_EQ(std::get<bool>(*p.get("ignition")), true);
    EXPECT_EQ(std::get<bool>(*p.get("motion")), true);
    EXPECT_EQ(std::get<std::int64_t>(*p.get("rssi")), 4);
    EXPECT_DOUBLE_EQ(std::get<double>(*p.get("power")), 12.65);
    EXPECT_DOUBLE_EQ(std::get<double>(*p.get("battery")), 4.05);
    EXPECT_EQ(std::get<std::int64_t>(*p.get("odometer")), 123456789);
    EXPECT_DOUBLE_EQ(std::get<double>(*p.get("pdop")), 1.2000000000000002);
    ASSERT_TRUE(p.hdop);
    EXPECT_NEAR(*p.hdop, 0.9, 1e-12);
    EXPECT_EQ(std::get<std::int64_t>(*p.get("io200")), 0x0102030405060708);
    EXPECT_EQ(std::get<std::string>(*r.positions[2].get("alarm")), "hardBraking");
    EXPECT_EQ(std::get<std::string>(*r.positions[2].get("driverUniqueId")), "01CD34AB12000000");
    if (codecId == 0x8E) {
      EXPECT_EQ(std::get<std::string>(*r.positions[1].get("vin")), "WVWZZZ1JZXW000001");
    }
  }
}

TEST(Teltonika, OutOfRangeCoordinatesHaveNoLocation) {
  auto codec = makeCodec();
  SessionState session;
  codec->decode(enc::imeiPacket("352093081452251"), session, kNow);
  enc::Record rec;
  rec.timeMs = 1'600'000'000'000;
  rec.latitude = 120;  // int32 / 1e7 reaches ±214°
  rec.longitude = 10;
  rec.satellites = 7;
  rec.angle = 400;  // not a course
  DecodeResult r = codec->decode(enc::encodeAvl(0x08, {rec}), session, kNow);
  ASSERT_EQ(r.positions.size(), 1u);
  EXPECT_FALSE(r.positions[0].hasLocation);
  EXPECT_FALSE(r.positions[0].valid);
  EXPECT_FALSE(r.positions[0].course);
  EXPECT_EQ(hex(r.response), "00000001");
}

TEST(Teltonika, TruncatedAndCorrupt) {
  auto codec = makeCodec();
  SessionState session;
  codec->decode(enc::imeiPacket("352093081452251"), session, kNow);
  enc::Record rec;
  rec.timeMs = 1'600'000'000'000;
  rec.satellites = 7;
  std::string frame = enc::encodeAvl(0x08, {rec, rec});
  // A bad CRC still decodes, flagged.
  std::string bad = frame;
  bad.back() = static_cast<char>(bad.back() ^ 0x55);
  DecodeResult r = codec->decode(bad, session, kNow);
  EXPECT_TRUE(r.badChecksum);
  EXPECT_EQ(r.positions.size(), 2u);
  // Records cut short: nothing decoded, nothing acknowledged (the device resends).
  for (std::size_t cut = 10; cut < frame.size() - 5; ++cut) {
    r = codec->decode(std::string_view(frame).substr(0, cut), session, kNow);
    EXPECT_TRUE(r.positions.empty()) << cut;
    EXPECT_TRUE(r.response.empty()) << cut;
    EXPECT_TRUE(r.badLength) << cut;
  }
}

TEST(Teltonika, Commands) {
  auto codec = makeCodec();
  SessionState session;
  session.deviceId = "352093081452251";
  auto encode = [&](CommandType type, std::string text = {}) {
    auto out = codec->encodeCommand(Command{type, std::move(text), 1}, session);
    return out ? hex(*out) : std::string("none");
  };
  // Teltonika's documented codec 12 example ("getinfo", CRC 0x4312).
  EXPECT_EQ(encode(CommandType::kCustom, "getinfo"),
            "000000000000000f0c010500000007676574696e666f0100004312");
  EXPECT_EQ(encode(CommandType::kEngineStop),
            "00000000000000130c01050000000b7365746469676f7574203101000087a2");
  EXPECT_EQ(encode(CommandType::kEngineResume),
            "00000000000000130c01050000000b7365746469676f7574203001000017a3");
  EXPECT_EQ(encode(CommandType::kPositionSingle),
            "000000000000000e0c010500000006676574677073010000ccd7");
  // Hex: the raw bytes as the codec 12 payload.
  EXPECT_EQ(encode(CommandType::kCustomHex, "676574696E666F"),
            "000000000000000f0c010500000007676574696e666f0100004312");
  EXPECT_EQ(encode(CommandType::kCustomHex, "abc"), "none");
  EXPECT_EQ(encode(CommandType::kCustom, ""), "none");

  // A command frame is itself a well-formed frame for the splitter.
  std::string cmd = *codec->encodeCommand(Command{CommandType::kCustom, "getver", 1}, session);
  EXPECT_EQ(codec->splitFrame(cmd).size, cmd.size());

  // The device's answers.
  SessionState device;
  codec->decode(enc::imeiPacket("352093081452251"), device, kNow);
  DecodeResult r = codec->decode(enc::codec12("DOUT1:1 Timeout:INFINITY\r\n"), device, kNow);
  ASSERT_TRUE(r.commandAnswer);
  EXPECT_EQ(r.commandAnswer->text, "DOUT1:1 Timeout:INFINITY");
  ASSERT_EQ(r.positions.size(), 1u);
  EXPECT_EQ(std::get<std::string>(*r.positions[0].get("result")), "DOUT1:1 Timeout:INFINITY");
  EXPECT_EQ(std::get<std::int64_t>(*r.positions[0].get("type")), 6);
  EXPECT_FALSE(r.positions[0].hasLocation);
  EXPECT_TRUE(r.response.empty());
  EXPECT_FALSE(r.badChecksum);

  r = codec->decode(enc::codec13("GPS:1 Sat:7 Lat:54.6 Long:25.2", 1'700'000'000), device, kNow);
  ASSERT_TRUE(r.commandAnswer);
  EXPECT_EQ(r.commandAnswer->text, "GPS:1 Sat:7 Lat:54.6 Long:25.2");
  ASSERT_EQ(r.positions.size(), 1u);
  EXPECT_EQ(r.positions[0].deviceTimeUs, kNow);
  EXPECT_TRUE(r.response.empty());

  r = codec->decode(enc::codec12(std::string("\x01\x00\xFE", 3)), device, kNow);
  ASSERT_TRUE(r.commandAnswer);
  EXPECT_EQ(r.commandAnswer->text, "0100fe");
}

}  // namespace
}  // namespace tern::codec::trackers
