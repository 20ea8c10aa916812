// GT06 / Concox codec: the reference corpus (Traccar's test frames), stream splitting, frames
// built from known values, commands and device answers.
#include "codec/trackers/gt06/gt06.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <fstream>
#include <map>
#include <sstream>

#include "codec/trackers/protocol.h"
#include "codec/trackers/util.h"
#include "frame_corpus.h"
#include "tools/tracker_frames/gt06_encoder.h"

namespace tern::codec::trackers {
namespace {

namespace json = boost::json;
namespace enc = tools::frames::gt06;

// 2024-05-06 07:08:09 UTC: "now" for time-dependent answers.
constexpr std::int64_t kNow = 1714979289LL * 1'000'000;

std::string hex(std::string_view bytes) {
  return toHex(bytes);
}
std::string bytes(std::string_view hexText) {
  return *fromHex(hexText);
}

SessionState acceptingSession() {
  SessionState session;
  session.accept = [](const std::string&) { return true; };
  return session;
}

// Frames whose bytes are not one whole frame as the stream would carry it (Traccar's test feeds
// them to the decoder directly):
//  gt06-071: cut short (ends with 0D, no 0A), so a stream splitter waits for the rest.
//  gt06-152: three frames of 97 bytes concatenated; the splitter returns them one by one.
const std::map<std::string, std::size_t> kOddFrames = {{"gt06-071", 0}, {"gt06-152", 97}};

// The structural checks the corpus builder computed (CRC, LEN), keyed by frame id.
struct Checks {
  bool crcValid = true;
  bool lengthConsistent = true;
  bool endsWithCrLf = true;
};

std::map<std::string, Checks> loadChecks() {
  std::ifstream in(std::string(TERN_SOURCE_DIR) + "/test/data/trackers/gt06.json");
  std::stringstream text;
  text << in.rdbuf();
  std::map<std::string, Checks> out;
  const json::value root = json::parse(text.str());
  for (const auto& v : root.as_object().at("frames").as_array()) {
    const auto& f = v.as_object();
    const auto& c = f.at("checks").as_object();
    Checks checks;
    checks.crcValid = c.at("crc_x25_valid").as_bool();
    checks.lengthConsistent = c.at("length_field_consistent").as_bool();
    checks.endsWithCrLf = c.at("ends_with_0d0a").as_bool();
    out[std::string(f.at("id").as_string().c_str())] = checks;
  }
  return out;
}

// The answer to a time request at kNow: 78 78 0B 8A YY MM DD hh mm ss 00 00 CRC 0D 0A (UTC).
std::string timeAnswerAtNow() {
  return enc::packet(0x8A, bytes("180506070809"), 0);
}

TEST(Gt06Corpus, EveryFrameDecodesAsTraccarExpects) {
  const auto frames = test::loadCorpus("gt06");
  const auto checks = loadChecks();
  ASSERT_EQ(frames.size(), 187u);

  std::map<std::string, std::vector<const test::CorpusFrame*>> groups;
  for (const auto& frame : frames) groups[frame.testMethod].push_back(&frame);

  int passed = 0;
  int considered = 0;
  for (const auto& [method, group] : groups) {
    auto codec = createGt06Codec();
    SessionState session = acceptingSession();
    for (const test::CorpusFrame* frame : group) {
      if (frame->disabled) continue;
      ++considered;
      SCOPED_TRACE(frame->id);
      // Decoder flags from the Traccar test (model override); absent means no model.
      const json::value* model = frame->setup.if_contains("device_model");
      session.setExtra("model", model != nullptr ? std::string(model->as_string().c_str()) : "");

      // Framing: the frame alone in the buffer comes out whole.
      FrameResult split = codec->splitFrame(frame->bytes);
      if (auto odd = kOddFrames.find(frame->id); odd != kOddFrames.end()) {
        if (odd->second == 0) {
          EXPECT_EQ(split.status, FrameStatus::kNeedMore) << frame->id;
        } else {
          EXPECT_EQ(split.status, FrameStatus::kOk) << frame->id;
          EXPECT_EQ(split.size, odd->second) << frame->id;
        }
      } else {
        EXPECT_EQ(split.status, FrameStatus::kOk) << frame->id;
        EXPECT_EQ(split.size, frame->bytes.size()) << frame->id;
      }

      // Decoding: the frame as Traccar's test passed it.
      DecodeResult result = codec->decode(frame->bytes, session, kNow);
      std::string problem = test::checkExpectations(*frame, result);
      if (frame->responseTemplate) {
        if (hex(result.response) != hex(timeAnswerAtNow())) {
          problem += " time answer " + hex(result.response);
        }
      } else {
        problem += test::checkResponse(*frame, result);
      }
      const Checks& c = checks.at(frame->id);
      if (result.badChecksum != !c.crcValid) problem += " badChecksum flag differs;";
      if (result.badLength != (!c.lengthConsistent || !c.endsWithCrLf)) {
        problem += " badLength flag differs;";
      }
      EXPECT_EQ(problem, "") << frame->id << ": " << problem;
      if (problem.empty()) ++passed;
    }
  }
  EXPECT_EQ(passed, considered);
  std::cout << "gt06 corpus: " << passed << " of " << considered << " frames pass\n";
}

TEST(Gt06Corpus, ReferenceFrameHasExactValues) {
  // gt06-144 (the one frame with exact values), after a login.
  auto codec = createGt06Codec();
  SessionState session = acceptingSession();
  codec->decode(bytes("78780d010352887071911998000479d00d0a"), session, kNow);
  ASSERT_EQ(session.deviceId, "352887071911998");
  auto result = codec->decode(
      bytes("78781f120f0a140e150bc505e51e780293a9e800540000f601006e0055da00035f240d0a"), session,
      kNow);
  ASSERT_EQ(result.positions.size(), 1u);
  const Position& p = result.positions[0];
  EXPECT_EQ(p.deviceId, "352887071911998");
  EXPECT_EQ(p.deviceTimeUs, *test::parseCorpusTime("2015-10-20 14:21:11.000"));
  EXPECT_TRUE(p.valid);
  EXPECT_NEAR(p.latitude, 54.94535, 1e-5);
  EXPECT_NEAR(p.longitude, 24.01762, 1e-5);
  EXPECT_EQ(p.satellites, 5);
  EXPECT_EQ(hex(result.response), "787805120003903f0d0a");
}

TEST(Gt06Split, FrameDecoderCases) {
  const auto cases = test::loadSplitCases("gt06");
  ASSERT_EQ(cases.size(), 9u);
  for (const auto& c : cases) {
    auto codec = createGt06Codec();
    FrameResult split = codec->splitFrame(c.input);
    if (!c.expectedFrame) {
      EXPECT_EQ(split.status, FrameStatus::kNeedMore) << c.source;
      continue;
    }
    ASSERT_EQ(split.status, FrameStatus::kOk) << c.source;
    EXPECT_EQ(hex(c.input.substr(0, split.size)), hex(*c.expectedFrame)) << c.source;
  }
}

// The frames of the corpus as a device would send them (the odd ones as the splitter yields
// them, see kOddFrames; the cut-short gt06-071 is left out).
std::vector<std::string> streamFrames() {
  std::vector<std::string> out;
  for (const auto& frame : test::loadCorpus("gt06")) {
    if (frame.id == "gt06-071") continue;
    if (frame.id == "gt06-152") {
      for (std::size_t at = 0; at < frame.bytes.size(); at += 97) {
        out.push_back(frame.bytes.substr(at, 97));
      }
      continue;
    }
    out.push_back(frame.bytes);
  }
  return out;
}

// Splits a buffer completely; returns the frames and the bytes skipped.
std::vector<std::string> splitAll(ProtocolCodec& codec, std::string buffer, std::size_t* skipped) {
  std::vector<std::string> frames;
  while (!buffer.empty()) {
    FrameResult r = codec.splitFrame(buffer);
    if (r.status == FrameStatus::kOk) {
      frames.push_back(buffer.substr(0, r.size));
      buffer.erase(0, r.size);
    } else if (r.status == FrameStatus::kSkip) {
      EXPECT_GT(r.size, 0u);
      if (skipped != nullptr) *skipped += r.size;
      buffer.erase(0, r.size);
    } else {
      break;
    }
  }
  EXPECT_TRUE(buffer.empty()) << "left over: " << hex(buffer);
  return frames;
}

TEST(Gt06Split, ByteAtATime) {
  const auto frames = streamFrames();
  auto codec = createGt06Codec();
  std::string buffer;
  std::vector<std::string> out;
  std::string stream;
  for (const auto& f : frames) stream += f;
  for (char c : stream) {
    buffer.push_back(c);
    while (true) {
      FrameResult r = codec->splitFrame(buffer);
      ASSERT_NE(r.status, FrameStatus::kTooLarge);
      ASSERT_NE(r.status, FrameStatus::kSkip) << "at frame " << out.size();
      if (r.status == FrameStatus::kNeedMore) break;
      out.push_back(buffer.substr(0, r.size));
      buffer.erase(0, r.size);
    }
  }
  EXPECT_TRUE(buffer.empty());
  ASSERT_EQ(out.size(), frames.size());
  for (std::size_t i = 0; i < frames.size(); ++i) EXPECT_EQ(hex(out[i]), hex(frames[i])) << i;
}

TEST(Gt06Split, CoalescedAndWithGarbage) {
  const auto frames = streamFrames();
  std::string stream;
  std::string dirty = "garbage\x01\x02";
  for (const auto& f : frames) {
    stream += f;
    dirty += f;
    dirty += std::string("\x00\xff\x7a\x55 noise", 10);
  }
  {
    auto codec = createGt06Codec();
    std::size_t skipped = 0;
    auto out = splitAll(*codec, stream, &skipped);
    EXPECT_EQ(skipped, 0u);
    ASSERT_EQ(out.size(), frames.size());
    for (std::size_t i = 0; i < frames.size(); ++i) EXPECT_EQ(hex(out[i]), hex(frames[i])) << i;
  }
  {
    auto codec = createGt06Codec();
    std::size_t skipped = 0;
    auto out = splitAll(*codec, dirty, &skipped);
    EXPECT_EQ(skipped, dirty.size() - stream.size());
    ASSERT_EQ(out.size(), frames.size());
    for (std::size_t i = 0; i < frames.size(); ++i) EXPECT_EQ(hex(out[i]), hex(frames[i])) << i;
  }
}

TEST(Gt06Split, ResyncAndLimits) {
  auto codec = createGt06Codec();
  EXPECT_EQ(codec->splitFrame("").status, FrameStatus::kNeedMore);
  EXPECT_EQ(codec->splitFrame("\x78").status, FrameStatus::kNeedMore);
  EXPECT_EQ(codec->splitFrame("\x78\x78\x05").status, FrameStatus::kNeedMore);
  FrameResult skip = codec->splitFrame("ab\x78\x79\x79\x79");
  EXPECT_EQ(skip.status, FrameStatus::kSkip);
  EXPECT_EQ(skip.size, 3u);  // "ab\x78" cannot start a frame; "79 79" can
  EXPECT_EQ(codec->splitFrame("abc").size, 3u);
  EXPECT_EQ(codec->splitFrame("abc\x78").size, 3u);

  // A declared length past the limit, or a frame that never ends, is refused once the buffer
  // reaches the maximum frame size.
  const std::size_t maxFrame = findProtocol("gt06")->maxFrameSize;
  std::string huge = "\x79\x79\xff\xff\x10";
  huge.resize(maxFrame, 'A');
  EXPECT_EQ(codec->splitFrame(huge).status, FrameStatus::kTooLarge);
  std::string endless = "\x78\x78\x05\x12";
  endless.resize(maxFrame, 'B');
  EXPECT_EQ(codec->splitFrame(endless).status, FrameStatus::kTooLarge);
  EXPECT_EQ(codec->splitFrame(endless.substr(0, 1000)).status, FrameStatus::kNeedMore);

  // A LEN that is too long: the frame still ends at 0D 0A once another frame follows.
  const std::string shortLogin = bytes("78780d010359339075005244340d0a");
  const std::string next = enc::status(0x40, 4, 4, 0, 9);
  EXPECT_EQ(codec->splitFrame(shortLogin + next).size, shortLogin.size());
  // ... and a 0D 0A inside a frame whose LEN is right does not end it early.
  const std::string serialData = bytes("797900109b0344373532304136320d0a000f87f00d0a");
  for (std::size_t n = 5; n < serialData.size(); ++n) {
    EXPECT_EQ(codec->splitFrame(serialData.substr(0, n)).status, FrameStatus::kNeedMore) << n;
  }
}

// --- frames built from known values ---

struct Device {
  std::unique_ptr<ProtocolCodec> codec = createGt06Codec();
  SessionState session = acceptingSession();

  DecodeResult send(const std::string& frame) {
    FrameResult split = codec->splitFrame(frame);
    EXPECT_EQ(split.status, FrameStatus::kOk);
    EXPECT_EQ(split.size, frame.size());
    DecodeResult r = codec->decode(frame, session, kNow);
    EXPECT_FALSE(r.badChecksum);
    EXPECT_FALSE(r.badLength);
    return r;
  }
};

constexpr double kResolution = 1.0 / 1'800'000 / 2 + 1e-12;  // half a unit of 1/30000 minute

TEST(Gt06Encoded, LoginAndPositionsWithKnownValues) {
  Device d;
  // Nothing is accepted (or answered) before the login.
  enc::Fix early;
  early.latitude = 10;
  EXPECT_TRUE(d.send(enc::gpsLbs1(early, 1)).positions.empty());
  EXPECT_EQ(d.send(enc::gpsLbs1(early, 1)).response, "");

  auto login = d.send(enc::login("123456789012345", 1));
  EXPECT_TRUE(login.positions.empty());
  EXPECT_EQ(d.session.deviceId, "123456789012345");
  EXPECT_EQ(hex(login.response), hex(enc::shortAck(0x01, 1)));
  EXPECT_EQ(hex(login.response), "787805010001d9dc0d0a");

  struct Case {
    double lat, lon;
    int speed, course;
    bool valid;
  };
  const Case cases[] = {
      {54.94535, 24.01762, 84, 246, true},         // north-east
      {-33.8688197, 151.2092955, 0, 0, true},      // south-east
      {40.7127753, -74.0059728, 255, 359, false},  // north-west
      {-22.9068467, -43.1728965, 60, 180, true},   // south-west
      {0, 0, 1, 1, true},
  };
  std::uint16_t serial = 2;
  for (const Case& c : cases) {
    enc::Fix f;
    f.year = 2023;
    f.month = 12;
    f.day = 31;
    f.hour = 23;
    f.minute = 59;
    f.second = 58;
    f.latitude = c.lat;
    f.longitude = c.lon;
    f.speedKmh = c.speed;
    f.course = c.course;
    f.valid = c.valid;
    f.satellites = 11;
    auto r = d.send(enc::gpsLbs1(f, serial));
    ASSERT_EQ(r.positions.size(), 1u);
    const Position& p = r.positions[0];
    EXPECT_EQ(p.protocol, "gt06");
    EXPECT_EQ(p.deviceId, "123456789012345");
    EXPECT_TRUE(p.hasLocation);
    EXPECT_EQ(p.valid, c.valid);
    EXPECT_NEAR(p.latitude, c.lat, kResolution);
    EXPECT_NEAR(p.longitude, c.lon, kResolution);
    EXPECT_DOUBLE_EQ(p.speedKmh, c.speed);  // km/h on the wire
    ASSERT_TRUE(p.course.has_value());
    EXPECT_DOUBLE_EQ(*p.course, c.course);
    EXPECT_EQ(p.satellites, 11);
    EXPECT_EQ(p.deviceTimeUs, *civilToMicros(2023, 12, 31, 23, 59, 58));
    EXPECT_EQ(hex(r.response), hex(enc::shortAck(0x12, serial)));
    ++serial;
  }
}

TEST(Gt06Encoded, IgnitionReasonArchiveAndAlarms) {
  Device d;
  d.send(enc::login("868120145233604", 7));
  enc::Fix f;
  f.latitude = -1.5;
  f.longitude = -2.25;
  f.accKnown = true;
  f.accOn = true;
  auto r = d.send(enc::gpsLbs2(f, true, 3, true, 0x0102));
  ASSERT_EQ(r.positions.size(), 1u);
  const Position& p = r.positions[0];
  EXPECT_EQ(std::get<bool>(*p.get(attr::kIgnition)), true);
  EXPECT_EQ(std::get<std::int64_t>(*p.get(attr::kEvent)), 3);
  EXPECT_EQ(std::get<bool>(*p.get(attr::kArchive)), true);
  EXPECT_EQ(hex(r.response), hex(enc::shortAck(0x22, 0x0102)));

  // Alarm report: SOS in the terminal info, power cut in the alarm byte, voltage level 3 of 6.
  auto a = d.send(enc::alarm(f, enc::terminalInfo(true, true, 4, true), 3, 4, 0x02, 0x0103));
  ASSERT_EQ(a.positions.size(), 1u);
  const Position& ap = a.positions[0];
  EXPECT_EQ(std::get<std::string>(*ap.get(attr::kAlarm)), "sos,powerCut");
  EXPECT_EQ(std::get<std::int64_t>(*ap.get(attr::kBatteryLevel)), 50);
  EXPECT_EQ(std::get<std::int64_t>(*ap.get(attr::kRssi)), 4);
  EXPECT_EQ(std::get<bool>(*ap.get(attr::kIgnition)), true);
  EXPECT_EQ(std::get<bool>(*ap.get(attr::kCharge)), true);
  EXPECT_EQ(std::get<bool>(*ap.get(attr::kBlocked)), true);
  EXPECT_NEAR(ap.latitude, -1.5, kResolution);
  EXPECT_NEAR(ap.longitude, -2.25, kResolution);
  EXPECT_EQ(hex(a.response), hex(enc::shortAck(0x16, 0x0103)));

  // Status/heartbeat: no location, but a position with the status attributes, and an ACK.
  auto s = d.send(enc::status(enc::terminalInfo(false, true, 0, false), 6, 2, 0, 0x0104));
  ASSERT_EQ(s.positions.size(), 1u);
  EXPECT_FALSE(s.positions[0].hasLocation);
  EXPECT_EQ(std::get<std::int64_t>(*s.positions[0].get(attr::kBatteryLevel)), 100);
  EXPECT_EQ(s.positions[0].get(attr::kAlarm), nullptr);
  EXPECT_EQ(hex(s.response), hex(enc::shortAck(0x13, 0x0104)));

  // GK310 heartbeat 0x23: status bits, battery voltage and GSM level.
  std::string body;
  enc::putU8(body, 0x07);
  enc::putU16(body, 412);
  enc::putU8(body, 3);
  enc::putU16(body, 0x0002);
  auto h = d.send(enc::packet(0x23, body, 0x0105));
  ASSERT_EQ(h.positions.size(), 1u);
  EXPECT_DOUBLE_EQ(std::get<double>(*h.positions[0].get(attr::kBattery)), 4.12);
  EXPECT_EQ(std::get<bool>(*h.positions[0].get("armed")), true);
  EXPECT_EQ(hex(h.response), hex(enc::shortAck(0x23, 0x0105)));
}

TEST(Gt06Encoded, LoginTimeZoneAppliesToLaterTimes) {
  Device d;
  // +08:00 east: device local 2024-03-01 08:30:00 is 00:30:00 UTC.
  d.send(enc::login("123456789012345", 1, 8 * 60));
  ASSERT_EQ(d.session.timeZoneOffsetSeconds, 8 * 3600);
  enc::Fix f;
  f.year = 2024;
  f.month = 3;
  f.day = 1;
  f.hour = 8;
  f.minute = 30;
  auto r = d.send(enc::gpsLbs1(f, 2));
  ASSERT_EQ(r.positions.size(), 1u);
  EXPECT_EQ(r.positions[0].deviceTimeUs, *civilToMicros(2024, 3, 1, 0, 30, 0));

  // -03:30 west.
  d.send(enc::login("123456789012345", 3, -(3 * 60 + 30)));
  ASSERT_EQ(d.session.timeZoneOffsetSeconds, -(3 * 3600 + 30 * 60));
  r = d.send(enc::gpsLbs1(f, 4));
  EXPECT_EQ(r.positions[0].deviceTimeUs, *civilToMicros(2024, 3, 1, 12, 0, 0));

  // A short login goes back to UTC.
  d.send(enc::login("123456789012345", 5));
  EXPECT_FALSE(d.session.timeZoneOffsetSeconds.has_value());
}

TEST(Gt06Encoded, RejectedDeviceGetsNoAnswer) {
  auto codec = createGt06Codec();
  SessionState session;
  session.accept = [](const std::string& id) { return id == "111111111111111"; };
  auto r = codec->decode(enc::login("222222222222222", 1), session, kNow);
  EXPECT_TRUE(r.response.empty());
  EXPECT_FALSE(session.identified());
  r = codec->decode(enc::login("111111111111111", 1), session, kNow);
  EXPECT_EQ(hex(r.response), hex(enc::shortAck(0x01, 1)));
}

TEST(Gt06Encoded, TimeRequestAnswersServerTime) {
  Device d;
  d.send(enc::login("123456789012345", 1));
  auto r = d.send(enc::packet(0x8A, {}, 6));
  EXPECT_TRUE(r.positions.empty());
  EXPECT_EQ(hex(r.response), hex(timeAnswerAtNow()));
  // Another clock: 2031-12-31 23:59:59.
  r = d.codec->decode(enc::packet(0x8A, {}, 7), d.session,
                      *civilToMicros(2031, 12, 31, 23, 59, 59));
  EXPECT_EQ(hex(r.response), hex(enc::packet(0x8A, bytes("1f0c1f173b3b"), 0)));
}

// --- commands and the device's answers ---

TEST(Gt06Commands, EncodesTextCommands) {
  auto codec = createGt06Codec();
  SessionState session = acceptingSession();
  auto command = [&](CommandType type, std::string text, std::uint32_t index) {
    return codec->encodeCommand(Command{type, std::move(text), index}, session);
  };
  EXPECT_EQ(hex(*command(CommandType::kEngineStop, "", 1)),
            "787812800c0000000052656c61792c312300018c670d0a");  // Relay,1#
  EXPECT_EQ(hex(*command(CommandType::kEngineResume, "", 2)),
            "787812800c0000000052656c61792c30230002a2470d0a");  // Relay,0#
  EXPECT_EQ(hex(*command(CommandType::kPositionSingle, "", 3)),
            "787810800a00000000574845524523000356700d0a");  // WHERE#
  EXPECT_EQ(hex(*command(CommandType::kCustom, "STATUS#", 0x1234)),
            "787811800b00000000535441545553231234a2940d0a");
  EXPECT_EQ(hex(*command(CommandType::kCustomHex, "78780a13440604000201baaf540d0a", 1)),
            "78780a13440604000201baaf540d0a");
  EXPECT_FALSE(command(CommandType::kCustomHex, "7g", 1));
  EXPECT_FALSE(command(CommandType::kCustom, "", 1));
  EXPECT_FALSE(command(CommandType::kCustom, std::string(300, 'x'), 1));

  // Devices configured for the "alternative" fuel-cut commands, and with a language word.
  session.setExtra("alternative", "true");
  session.setExtra("password", "654321");
  EXPECT_EQ(hex(*command(CommandType::kEngineStop, "", 5)),
            "787815800f000000004459442c363534333231230005eb2f0d0a");  // DYD,654321#
  session.setExtra("alternative", "false");
  session.setExtra("language", "true");
  EXPECT_EQ(hex(*command(CommandType::kEngineStop, "", 7)),
            "787814800c0000000052656c61792c31230002000781200d0a");
}

TEST(Gt06Commands, DeviceAnswersBecomeCommandAnswers) {
  Device d;
  d.send(enc::login("123456789012345", 1));

  // 0x15 string reply to Relay,1#.
  const std::string text = "Cut off the fuel supply: Success!";
  std::string body;
  enc::putU8(body, static_cast<unsigned>(4 + text.size()));
  enc::putU32(body, 0);
  body += text;
  enc::putU16(body, 0x0002);  // language
  auto r = d.send(enc::packet(0x15, body, 0x013B));
  ASSERT_TRUE(r.commandAnswer);
  EXPECT_EQ(r.commandAnswer->text, text);
  ASSERT_EQ(r.positions.size(), 1u);
  EXPECT_EQ(std::get<std::string>(*r.positions[0].get(attr::kResult)), text);
  EXPECT_EQ(hex(r.response), hex(enc::shortAck(0x15, 0x013B)));

  // A reply whose length byte is 0, the text NUL-padded (gt06-126).
  r = d.send(bytes(
      "7878661500000000004459443d53756363657373210000000000000000000000000000000000000000000000"
      "0000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
      "000000000000000000000000010009e82b0d0a"));
  ASSERT_TRUE(r.commandAnswer);
  EXPECT_EQ(r.commandAnswer->text, "DYD=Success!");
  EXPECT_EQ(hex(r.response), "787805150009b3600d0a");

  // 0x21 (extended) answer to WHERE#: a position, no ACK.
  const std::string where =
      "Current position!Lat:S33.868819,Lon:W151.209295,Course:126.53,Speed:10.0000,"
      "DateTime:2017-05-26  10:27:47";
  body.clear();
  enc::putU32(body, 0);
  enc::putU8(body, 1);  // ASCII
  body += where;
  r = d.send(enc::packet(0x21, body, 0x000B, true));
  ASSERT_TRUE(r.commandAnswer);
  EXPECT_EQ(r.commandAnswer->text, where);
  EXPECT_TRUE(r.response.empty());
  ASSERT_EQ(r.positions.size(), 1u);
  const Position& p = r.positions[0];
  EXPECT_TRUE(p.hasLocation);
  EXPECT_NEAR(p.latitude, -33.868819, 1e-9);
  EXPECT_NEAR(p.longitude, -151.209295, 1e-9);
  EXPECT_DOUBLE_EQ(*p.course, 126.53);
  EXPECT_EQ(p.deviceTimeUs, *civilToMicros(2017, 5, 26, 10, 27, 47));

  // 0x21 in UTF-16: text only.
  body.clear();
  enc::putU32(body, 0);
  enc::putU8(body, 2);
  for (char c : std::string("OK!")) {
    enc::putU8(body, 0);
    enc::putU8(body, static_cast<unsigned char>(c));
  }
  r = d.send(enc::packet(0x21, body, 0x000C, true));
  ASSERT_TRUE(r.commandAnswer);
  EXPECT_EQ(r.commandAnswer->text, "OK!");
  EXPECT_EQ(std::get<std::string>(*r.positions.at(0).get(attr::kResult)), "OK!");
}

TEST(Gt06Robustness, TruncatedFramesNeverCrash) {
  // Every prefix of every corpus frame, under each device-model override the decoder knows.
  const auto frames = test::loadCorpus("gt06");
  for (const char* model : {"", "NT20", "XT40", "LW4G-4B", "SEEWORLD", "R11", "QH302R", "VL103"}) {
    auto codec = createGt06Codec();
    SessionState session = acceptingSession();
    session.setExtra("model", model);
    codec->decode(enc::login("123456789012345", 1), session, kNow);
    for (const auto& frame : frames) {
      for (std::size_t n = 0; n <= frame.bytes.size(); ++n) {
        DecodeResult r = codec->decode(std::string_view(frame.bytes).substr(0, n), session, kNow);
        for (const auto& p : r.positions) {
          if (p.hasLocation) {
            EXPECT_LE(std::fabs(p.latitude), 90.0);
            EXPECT_LE(std::fabs(p.longitude), 180.0);
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace tern::codec::trackers
