// Ruptela: the reference corpus (Traccar's test frames), stream splitting, packets encoded from
// known values, acknowledgements, commands and command answers.
#include <gtest/gtest.h>

#include <map>

#include "codec/trackers/protocol.h"
#include "codec/trackers/util.h"
#include "frame_corpus.h"
#include "tools/tracker_frames/ruptela_encoder.h"

namespace tern::codec::trackers {
namespace {

namespace enc = tern::tools::frames::ruptela;
using test::CorpusFrame;

constexpr std::int64_t kNow = 1'700'000'000'000'000;
constexpr std::uint64_t kImei = 863071016796572;

std::unique_ptr<ProtocolCodec> makeCodec() {
  return findProtocol("ruptela")->create();
}

std::string hex(std::string_view s) {
  return toHex(s);
}
std::string unhex(std::string_view s) {
  return *fromHex(s);
}

std::size_t declaredSize(const std::string& bytes) {
  ByteReader r(bytes);
  return std::size_t{r.u16()} + 4;
}

bool lengthConsistent(const CorpusFrame& f) {
  return declaredSize(f.bytes) == f.bytes.size();
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

TEST(Ruptela, MaxFrameSizeMatchesRegistry) {
  const ProtocolInfo* info = findProtocol("ruptela");
  ASSERT_NE(info, nullptr);
  EXPECT_EQ(info->maxFrameSize, 64u * 1024u);
  EXPECT_EQ(info->defaultPort, 5046);
}

TEST(Ruptela, Corpus) {
  auto frames = test::loadCorpus("ruptela");
  ASSERT_EQ(frames.size(), 16u);
  std::size_t checked = 0;
  std::size_t odd = 0;
  for (const auto& group : groupsByMethod(frames)) {
    auto codec = makeCodec();
    SessionState session;  // accepts every device
    for (const auto& f : group) {
      FrameResult split = codec->splitFrame(f.bytes);
      if (lengthConsistent(f)) {
        EXPECT_EQ(split.status, FrameStatus::kOk) << f.id;
        EXPECT_EQ(split.size, f.bytes.size()) << f.id;
      } else {
        // LEN in the test frame itself is wrong (ruptela-007, -009): the splitter follows LEN,
        // like Netty's length-field decoder; the frame is then decoded whole, as Traccar's test
        // does, and flagged.
        ++odd;
        std::size_t declared = declaredSize(f.bytes);
        ASSERT_LT(declared, f.bytes.size()) << f.id;
        EXPECT_EQ(split.status, FrameStatus::kOk) << f.id;
        EXPECT_EQ(split.size, declared) << f.id;
      }
      DecodeResult result = codec->decode(f.bytes, session, kNow);
      EXPECT_EQ(test::checkExpectations(f, result), "") << f.id;
      EXPECT_EQ(test::checkResponse(f, result), "") << f.id;
      EXPECT_FALSE(result.badChecksum) << f.id;  // all 16 pass the CRC
      EXPECT_EQ(result.badLength, !lengthConsistent(f)) << f.id;
      ++checked;
    }
  }
  EXPECT_EQ(checked, 16u);
  EXPECT_EQ(odd, 2u);
}

TEST(Ruptela, CorpusDetails) {
  std::map<std::string, CorpusFrame> byId;
  for (auto& f : test::loadCorpus("ruptela")) byId[f.id] = f;
  auto decode = [&](const std::string& id) {
    auto codec = makeCodec();
    SessionState session;
    return codec->decode(byId.at(id).bytes, session, kNow);
  };
  // Extended records 0x30..0x33 are four parts of one position each (ruptela-010: 4 → 1,
  // ruptela-011: 8 → 2).
  EXPECT_EQ(decode("ruptela-010").positions.size(), 1u);
  EXPECT_EQ(decode("ruptela-011").positions.size(), 2u);
  DecodeResult r = decode("ruptela-001");
  ASSERT_EQ(r.positions.size(), 1u);
  EXPECT_EQ(r.positions[0].deviceId, "863514052765894");

  // No fix (INT32_MIN coordinates): positions without a location.
  r = decode("ruptela-003");
  ASSERT_EQ(r.positions.size(), 29u);
  EXPECT_FALSE(r.positions[0].hasLocation);
  EXPECT_EQ(r.positions[0].deviceTimeUs, std::int64_t{0x386d438b} * 1'000'000);

  // DTCs, the second one archived.
  r = decode("ruptela-009");
  ASSERT_EQ(r.positions.size(), 2u);
  EXPECT_EQ(r.positions[0].deviceId, "012207001062170");
  EXPECT_EQ(std::get<std::string>(*r.positions[0].get("dtcs")), "P0010");
  EXPECT_EQ(std::get<std::string>(*r.positions[1].get("dtcs")), "P0011");
  EXPECT_EQ(r.positions[0].get("archive"), nullptr);
  EXPECT_EQ(std::get<bool>(*r.positions[1].get("archive")), true);
  EXPECT_NEAR(r.positions[0].longitude, 0x07D608F1 / 1e7, 1e-9);
  EXPECT_NEAR(r.positions[0].latitude, 0x1A1480BA / 1e7, 1e-9);

  // Text answers.
  r = decode("ruptela-007");
  ASSERT_TRUE(r.commandAnswer);
  EXPECT_EQ(r.commandAnswer->text, "SETIO configuration data ok");
  EXPECT_EQ(std::get<std::string>(*r.positions[0].get("result")), "SETIO configuration data ok");
  EXPECT_EQ(std::get<std::int64_t>(*r.positions[0].get("type")), 7);
  r = decode("ruptela-008");
  ASSERT_TRUE(r.commandAnswer);
  EXPECT_EQ(r.commandAnswer->text.substr(0, 14), "DIN1=1,DIN2=0,");
  EXPECT_TRUE(r.response.empty());

  // Known IO values of ruptela-012 (a 1 RECORDS packet), read by hand.
  r = decode("ruptela-012");
  ASSERT_EQ(r.positions.size(), 1u);
  const Position& p = r.positions[0];
  EXPECT_EQ(p.deviceTimeUs, std::int64_t{0x5613d8ed} * 1'000'000);
  EXPECT_NEAR(p.longitude, static_cast<std::int32_t>(0xfff5b37a) / 1e7, 1e-9);
  EXPECT_NEAR(p.latitude, 0x035af378 / 1e7, 1e-9);
  EXPECT_EQ(std::get<std::int64_t>(*p.get("event")), 7);
  EXPECT_DOUBLE_EQ(std::get<double>(*p.get("power")), 0x33e6 * 0.001);
  EXPECT_DOUBLE_EQ(std::get<double>(*p.get("battery")), 0x1001 * 0.001);
  EXPECT_EQ(std::get<std::int64_t>(*p.get("odometer")), 0x77fa);
}

TEST(Ruptela, SplitCasesNone) {
  EXPECT_TRUE(test::loadSplitCases("ruptela").empty());
}

// The corpus frames that are whole and unambiguous on a stream, in order.
std::vector<std::string> streamFrames() {
  std::vector<std::string> out;
  for (const auto& f : test::loadCorpus("ruptela")) {
    // ruptela-007 and -009 carry a LEN that contradicts their size: no stream splitter could
    // return them whole.
    if (f.disabled || !lengthConsistent(f)) continue;
    out.push_back(f.bytes);
  }
  return out;
}

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

TEST(Ruptela, ByteAtATime) {
  auto frames = streamFrames();
  ASSERT_EQ(frames.size(), 14u);
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

TEST(Ruptela, CoalescedAndGarbage) {
  auto frames = streamFrames();
  std::string all;
  for (const auto& f : frames) all += f;
  auto codec = makeCodec();
  auto out = splitAll(*codec, all);
  ASSERT_EQ(out.size(), frames.size());
  for (std::size_t i = 0; i < out.size(); ++i) EXPECT_EQ(hex(out[i]), hex(frames[i])) << i;

  // Garbage that cannot be a packet header (LEN < 9, or an IMEI above 15 digits).
  const std::string garbage[] = {"GET / HTTP/1.1\r\n", std::string("\xFF\xFE\xFD", 3),
                                 std::string("\x00\x01\x02", 3), std::string("\x00\x20\x01", 3)};
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

TEST(Ruptela, TooLarge) {
  auto codec = makeCodec();
  EXPECT_EQ(codec->splitFrame(unhex("ffff0003")).status, FrameStatus::kTooLarge);
  EXPECT_EQ(codec->splitFrame(unhex("fffd0003")).status, FrameStatus::kTooLarge);
  EXPECT_EQ(codec->splitFrame(unhex("fffc0003")).status, FrameStatus::kNeedMore);
  EXPECT_EQ(codec->splitFrame(unhex("00")).status, FrameStatus::kNeedMore);
}

TEST(Ruptela, KnownValuesRecords) {
  std::vector<enc::Record> recs(3);
  recs[0].timeSeconds = 1'700'000'123;
  recs[0].latitude = -33.8688197;  // south, east
  recs[0].longitude = 151.2092955;
  recs[0].altitudeM = 58.3;
  recs[0].courseDeg = 271.25;
  recs[0].satellites = 11;
  recs[0].speedKmh = 87;
  recs[0].hdop = 0.9;
  recs[0].eventId = 7;
  recs[0].io = {{2, enc::be(1, 1)},      {29, enc::be(12650, 2)},
                {30, enc::be(4050, 2)},  {65, enc::be(123456, 4)},
                {197, enc::be(8000, 2)}, {251, enc::be(1, 1)},
                {100, enc::be(50, 2)},   {200, enc::be(0x0102030405060708, 8)}};
  recs[1].timeSeconds = 946'684'800;
  recs[1].latitude = 40.7127753;  // north, west
  recs[1].longitude = -74.0059728;
  recs[1].courseDeg = 360;
  recs[1].satellites = 4;
  recs[1].speedKmh = 0;
  recs[2].timeSeconds = 1'262'304'000;
  recs[2].latitude = -22.9068467;  // south, west
  recs[2].longitude = -43.1728965;
  recs[2].altitudeM = 0;
  recs[2].satellites = 5;
  recs[2].speedKmh = 250;
  recs[2].hdop = 2.5;

  for (bool extended : {false, true}) {
    SCOPED_TRACE(extended);
    auto codec = makeCodec();
    SessionState session;
    std::string frame = enc::records(kImei, extended, recs);
    FrameResult split = codec->splitFrame(frame);
    ASSERT_EQ(split.status, FrameStatus::kOk);
    ASSERT_EQ(split.size, frame.size());
    DecodeResult r = codec->decode(frame, session, kNow);
    EXPECT_FALSE(r.badChecksum);
    EXPECT_FALSE(r.badLength);
    EXPECT_EQ(hex(r.response), "0002640113bc");
    EXPECT_EQ(session.deviceId, "863071016796572");
    ASSERT_EQ(r.positions.size(), 3u);
    for (std::size_t i = 0; i < 3; ++i) {
      const Position& p = r.positions[i];
      EXPECT_EQ(p.deviceId, "863071016796572");
      EXPECT_EQ(p.protocol, "ruptela");
      EXPECT_EQ(p.deviceTimeUs, std::int64_t{recs[i].timeSeconds} * 1'000'000) << i;
      EXPECT_TRUE(p.hasLocation);
      EXPECT_TRUE(p.valid);
      EXPECT_NEAR(p.latitude, *recs[i].latitude, 1e-7) << i;
      EXPECT_NEAR(p.longitude, *recs[i].longitude, 1e-7) << i;
      EXPECT_NEAR(*p.altitude, recs[i].altitudeM, 1e-9) << i;
      EXPECT_NEAR(*p.course, recs[i].courseDeg, 1e-9) << i;
      EXPECT_EQ(p.speedKmh, recs[i].speedKmh) << i;
      EXPECT_EQ(p.satellites, recs[i].satellites) << i;
      EXPECT_NEAR(*p.hdop, recs[i].hdop, 1e-9) << i;
      EXPECT_EQ(std::get<std::int64_t>(*p.get("event")), recs[i].eventId) << i;
    }
    const Position& p = r.positions[0];
    EXPECT_EQ(std::get<bool>(*p.get("in1")), true);
    EXPECT_DOUBLE_EQ(std::get<double>(*p.get("power")), 12.65);
    EXPECT_DOUBLE_EQ(std::get<double>(*p.get("battery")), 4.05);
    EXPECT_EQ(std::get<std::int64_t>(*p.get("odometer")), 123456);
    EXPECT_DOUBLE_EQ(std::get<double>(*p.get("rpm")), 1000.0);
    EXPECT_EQ(std::get<bool>(*p.get("ignition")), true);
    EXPECT_DOUBLE_EQ(std::get<double>(*p.get("fuelConsumption")), 2.5);
    EXPECT_EQ(std::get<std::int64_t>(*p.get("io200")), 0x0102030405060708);
  }
}

TEST(Ruptela, NoFixAndMergedRecords) {
  auto codec = makeCodec();
  SessionState session;
  enc::Record noFix;
  noFix.timeSeconds = 1'600'000'000;
  noFix.io = {{29, enc::be(12000, 2)}};
  DecodeResult r = codec->decode(enc::records(kImei, false, {noFix}), session, kNow);
  ASSERT_EQ(r.positions.size(), 1u);
  EXPECT_FALSE(r.positions[0].hasLocation);
  EXPECT_FALSE(r.positions[0].valid);
  EXPECT_EQ(r.positions[0].deviceTimeUs, std::int64_t{1'600'000'000} * 1'000'000);

  // One record in two parts (extension 0x10, 0x11), a tachograph card id split over them.
  enc::Record a;
  a.timeSeconds = 1'600'000'000;
  a.latitude = 54.6872;
  a.longitude = 25.2797;
  a.satellites = 9;
  a.recordExtension = 0x10;
  a.io = {{29, enc::be(12000, 2)}, {126, "10000001"}};
  enc::Record b = a;
  b.recordExtension = 0x11;
  b.io = {{127, std::string("23456789", 8)}, {251, enc::be(1, 1)}};
  r = codec->decode(enc::records(kImei, true, {a, b}), session, kNow);
  ASSERT_EQ(r.positions.size(), 1u);
  const Position& p = r.positions[0];
  EXPECT_DOUBLE_EQ(std::get<double>(*p.get("power")), 12.0);
  EXPECT_EQ(std::get<bool>(*p.get("ignition")), true);
  EXPECT_EQ(std::get<std::string>(*p.get("driverUniqueId")), "1000000123456789");
  EXPECT_EQ(hex(r.response), "0002640113bc");
}

TEST(Ruptela, ScaledValuesNeverOverflow) {
  // Found by the fuzzer: an 8-byte odometer times its unit overflowed int64.
  auto codec = makeCodec();
  SessionState session;
  enc::Record rec;
  rec.timeSeconds = 1'600'000'000;
  rec.io = {{163, enc::be(0xA3A3A3A3A3A3A3A3, 8)}, {65, enc::be(1000, 4)}};
  DecodeResult r = codec->decode(enc::records(kImei, false, {rec}), session, kNow);
  ASSERT_EQ(r.positions.size(), 1u);
  EXPECT_NE(r.positions[0].get("io163"), nullptr);  // kept raw
  ASSERT_NE(r.positions[0].get("odometer"), nullptr);
  EXPECT_EQ(std::get<std::int64_t>(*r.positions[0].get("odometer")), 1000);
  rec.io = {{163, enc::be(200, 4)}, {645, enc::be(12, 4)}};  // 645 needs 2-byte ids
  r = codec->decode(enc::records(kImei, true, {rec}), session, kNow);
  ASSERT_EQ(r.positions.size(), 1u);
  ASSERT_NE(r.positions[0].get("odometer"), nullptr);
  ASSERT_NE(r.positions[0].get("obdOdometer"), nullptr);
  EXPECT_EQ(std::get<std::int64_t>(*r.positions[0].get("odometer")), 1000);
  EXPECT_EQ(std::get<std::int64_t>(*r.positions[0].get("obdOdometer")), 12000);
}

TEST(Ruptela, AcksAndSessions) {
  auto codec = makeCodec();
  SessionState session;
  session.accept = [](const std::string& id) { return id == "863071016796572"; };
  // Identification and heartbeat: 00 02 <100+cmd> 01 CRC.
  DecodeResult r = codec->decode(enc::packet(kImei, 15, "FM-Eco4 00.01.08"), session, kNow);
  EXPECT_EQ(hex(r.response), "00027301cb25");
  EXPECT_TRUE(r.positions.empty());
  r = codec->decode(enc::packet(kImei, 16, ""), session, kNow);
  EXPECT_EQ(hex(r.response), "00027401862d");
  r = codec->decode(enc::dtcs(kImei, {{1'600'000'000, -33.5, -70.6, false, "P0300"}}), session,
                    kNow);
  EXPECT_EQ(hex(r.response), "00026d01c4a4");
  ASSERT_EQ(r.positions.size(), 1u);
  EXPECT_NEAR(r.positions[0].latitude, -33.5, 1e-9);
  EXPECT_NEAR(r.positions[0].longitude, -70.6, 1e-9);
  EXPECT_EQ(std::get<std::string>(*r.positions[0].get("dtcs")), "P0300");

  // An unknown device: dropped without any answer.
  enc::Record rec;
  rec.timeSeconds = 1'600'000'000;
  rec.latitude = 1;
  rec.longitude = 2;
  r = codec->decode(enc::records(123456789012345, false, {rec}), session, kNow);
  EXPECT_TRUE(r.positions.empty());
  EXPECT_TRUE(r.response.empty());

  // A bad CRC still decodes, flagged.
  std::string frame = enc::records(kImei, false, {rec});
  frame.back() = static_cast<char>(frame.back() ^ 0x5A);
  r = codec->decode(frame, session, kNow);
  EXPECT_TRUE(r.badChecksum);
  EXPECT_EQ(r.positions.size(), 1u);
  EXPECT_EQ(hex(r.response), "0002640113bc");

  // Truncated records: nothing decoded, nothing acknowledged.
  std::string good = enc::records(kImei, false, {rec, rec});
  for (std::size_t cut = 13; cut < good.size() - 2; ++cut) {
    std::string shortened = good.substr(0, cut);
    r = codec->decode(shortened, session, kNow);
    EXPECT_TRUE(r.positions.empty()) << cut;
    EXPECT_TRUE(r.response.empty()) << cut;
  }
}

TEST(Ruptela, Commands) {
  auto codec = makeCodec();
  SessionState session;
  session.deviceId = "863071016796572";
  auto encode = [&](CommandType type, std::string text = {}) {
    auto out = codec->encodeCommand(Command{type, std::move(text), 1}, session);
    return out ? hex(*out) : std::string("none");
  };
  // Free text as an SMS-style command over GPRS: LEN, 08, text, CRC-16/KERMIT.
  EXPECT_EQ(encode(CommandType::kCustom, " coords"), "00080820636f6f72647353e8");
  EXPECT_EQ(encode(CommandType::kCustom, "pass setio 1,0"),
            "000f087061737320736574696f20312c30d32c");
  // The notes define no engine / position commands for Ruptela.
  EXPECT_EQ(encode(CommandType::kEngineStop), "none");
  EXPECT_EQ(encode(CommandType::kEngineResume), "none");
  EXPECT_EQ(encode(CommandType::kPositionSingle), "none");
  EXPECT_EQ(encode(CommandType::kCustomHex, "0102"), "none");
  EXPECT_EQ(encode(CommandType::kCustom, ""), "none");

  // The device's answer (command 7).
  SessionState device;
  DecodeResult r =
      codec->decode(enc::packet(kImei, 7, "2013-04-24 07:01, lat. 46.1443183"), device, kNow);
  ASSERT_TRUE(r.commandAnswer);
  EXPECT_EQ(r.commandAnswer->text, "2013-04-24 07:01, lat. 46.1443183");
  ASSERT_EQ(r.positions.size(), 1u);
  EXPECT_FALSE(r.positions[0].hasLocation);
  EXPECT_TRUE(r.response.empty());
}

}  // namespace
}  // namespace tern::codec::trackers
