// H02: the reference corpus, stream splitting, known-value round trips, acks and commands.
#include "codec/trackers/h02/h02.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "codec/trackers/protocol.h"
#include "codec/trackers/util.h"
#include "frame_corpus.h"
#include "tools/tracker_frames/h02_encoder.h"

namespace tern::codec::trackers {
namespace {

namespace enc = tools::frames::h02;

// 2023-11-14 22:13:20 UTC.
constexpr std::int64_t kNow = 1'700'000'000'000'000;
constexpr const char* kNowLong = "20231114221320";  // yyyyMMddHHmmss
constexpr const char* kNowShort = "221320";         // HHmmss

std::unique_ptr<ProtocolCodec> makeCodec() {
  return findProtocol("h02")->create();
}

// Decoder flags a Traccar test set (none for H02 so far) reach the codec as session extras.
SessionState sessionFor(const test::CorpusFrame& frame) {
  SessionState session;
  for (const auto& [key, value] : frame.setup) {
    if (key == "decoder" || key == "test_method" || key == "test_disabled") continue;
    if (value.is_string()) {
      session.setExtra(key, std::string(value.as_string().c_str()));
    } else {
      session.setExtra(key, boost::json::serialize(value));
    }
  }
  return session;
}

// Trailing CR/LF after '#' are not part of a text frame (the splitter skips them).
std::string withoutLineEnd(std::string bytes) {
  while (!bytes.empty() && (bytes.back() == '\r' || bytes.back() == '\n')) bytes.pop_back();
  return bytes;
}

std::string fillTemplate(std::string text) {
  const std::string marker = "<yyyyMMddHHmmss server UTC>";
  auto at = text.find(marker);
  if (at != std::string::npos) text.replace(at, marker.size(), kNowLong);
  return text;
}

// Splits `bytes` as a stream that ends there: every frame found, skips dropped.
std::vector<std::string> splitAll(ProtocolCodec& codec, std::string_view bytes,
                                  std::string* problem = nullptr) {
  std::vector<std::string> frames;
  while (!bytes.empty()) {
    FrameResult r = codec.splitFrame(bytes);
    if (r.status == FrameStatus::kOk || r.status == FrameStatus::kSkip) {
      if (r.size == 0 || r.size > bytes.size()) {
        if (problem != nullptr) *problem = "bad size";
        break;
      }
      if (r.status == FrameStatus::kOk) frames.emplace_back(bytes.substr(0, r.size));
      bytes.remove_prefix(r.size);
      continue;
    }
    if (problem != nullptr && r.status == FrameStatus::kTooLarge) *problem = "too large";
    break;
  }
  return frames;
}

// Feeds `stream` one byte at a time; a frame must come out exactly when its last byte arrives.
std::vector<std::string> splitByteByByte(ProtocolCodec& codec, const std::string& stream,
                                         std::string& problem) {
  std::vector<std::string> frames;
  std::string buffer;
  for (char c : stream) {
    buffer.push_back(c);
    while (!buffer.empty()) {
      FrameResult r = codec.splitFrame(buffer);
      if (r.status == FrameStatus::kNeedMore) break;
      if (r.status == FrameStatus::kTooLarge || r.size == 0 || r.size > buffer.size()) {
        problem = "split failed with " + std::to_string(buffer.size()) + " bytes buffered";
        return frames;
      }
      if (r.status == FrameStatus::kOk) frames.push_back(buffer.substr(0, r.size));
      buffer.erase(0, r.size);
    }
  }
  if (!buffer.empty()) problem = std::to_string(buffer.size()) + " bytes left over";
  return frames;
}

bool isText(const test::CorpusFrame& f) {
  return !f.bytes.empty() && f.bytes[0] == '*';
}

// ---- 1. the corpus ---------------------------------------------------------------------------

TEST(H02Corpus, EveryFrameDecodesAsExpected) {
  std::vector<test::CorpusFrame> corpus = test::loadCorpus("h02");
  ASSERT_EQ(corpus.size(), 89u);
  std::map<std::string, std::vector<const test::CorpusFrame*>> groups;
  std::vector<std::string> order;
  for (const auto& f : corpus) {
    if (groups[f.testMethod].empty()) order.push_back(f.testMethod);
    groups[f.testMethod].push_back(&f);
  }
  int checked = 0;
  int passed = 0;
  for (const auto& method : order) {
    auto codec = makeCodec();
    SessionState session = sessionFor(*groups[method].front());
    for (const test::CorpusFrame* f : groups[method]) {
      if (f->disabled) continue;
      ++checked;
      std::string problems;
      const std::string expectedFrame = isText(*f) ? withoutLineEnd(f->bytes) : f->bytes;
      FrameResult split = codec->splitFrame(f->bytes);
      if (split.status != FrameStatus::kOk || split.size != expectedFrame.size()) {
        problems += " split returned status " + std::to_string(static_cast<int>(split.status)) +
                    " size " + std::to_string(split.size) + ";";
      } else {
        std::string_view rest = std::string_view(f->bytes).substr(split.size);
        while (!rest.empty()) {
          FrameResult skip = codec->splitFrame(rest);
          if (skip.status != FrameStatus::kSkip || skip.size == 0 || skip.size > rest.size()) {
            problems += " trailing bytes not skipped;";
            break;
          }
          rest.remove_prefix(skip.size);
        }
      }
      DecodeResult result = codec->decode(expectedFrame, session, kNow);
      problems += test::checkExpectations(*f, result);
      problems += test::checkResponse(*f, result);
      if (f->responseTemplate) {
        std::string want = fillTemplate(*f->responseTemplate);
        if (result.response != want) problems += " response " + result.response + " != " + want;
      }
      for (const auto& p : result.positions) {
        if (p.protocol != "h02" || p.deviceId.empty()) problems += " protocol/deviceId unset;";
      }
      if (problems.empty()) {
        ++passed;
      } else {
        ADD_FAILURE() << f->id << ":" << problems;
      }
    }
  }
  std::printf("h02 corpus: %d of %d frames pass\n", passed, checked);
  EXPECT_EQ(passed, checked);
}

// The expectations Traccar's tests do not state, checked here with the values in the frames.
TEST(H02Corpus, SelectedValues) {
  auto decodeOne = [](const std::string& frame) {
    auto codec = makeCodec();
    SessionState session;
    return codec->decode(frame, session, kNow);
  };
  {
    // Knots in the frame, km/h in the position; status bits.
    DecodeResult r = decodeOne(
        "*HQ,353588020068342,V1,084436,A,3257.01525,N,00655.03865,W,57.78,40,011216,FFFBFFFF,"
        "25c,a, 154,b04c#");
    ASSERT_EQ(r.positions.size(), 1u);
    const Position& p = r.positions[0];
    EXPECT_NEAR(p.speedKmh, 57.78 * kKnotsToKmh, 1e-9);
    EXPECT_NEAR(*p.course, 40, 1e-9);
    EXPECT_NEAR(p.latitude, 32 + 57.01525 / 60, 1e-9);
    EXPECT_NEAR(p.longitude, -(6 + 55.03865 / 60), 1e-9);
    EXPECT_EQ(std::get<std::string>(*p.get("io1")), "25c");
    EXPECT_EQ(std::get<std::string>(*p.get("io3")), "154");
    EXPECT_EQ(std::get<bool>(*p.get(attr::kIgnition)), true);  // bit 10 high
    // Bit 18 low: SOS.
    EXPECT_EQ(std::get<std::string>(*p.get(attr::kAlarm)), "sos");
  }
  {
    // Odometer, temperature, fuel and altitude after the status.
    DecodeResult r = decodeOne(
        "*HQ,2130510938,V1,012632,A,0520.0663,N,10028.6324,E,0.286,023,100317,FFFFDFFF,"
        "69129336,0,100.0,18,5141,5A20#");
    ASSERT_EQ(r.positions.size(), 1u);
    const Position& p = r.positions[0];
    EXPECT_EQ(std::get<std::int64_t>(*p.get(attr::kOdometer)), 69129336);
    EXPECT_DOUBLE_EQ(std::get<double>(*p.get(attr::kFuelLevel)), 100.0);
    EXPECT_EQ(std::get<std::int64_t>(*p.get("temp1")), 0);
    EXPECT_DOUBLE_EQ(*p.altitude, 18);
  }
  {
    // Binary 45-byte frame with the expected Traccar values, plus its speed, course, battery.
    auto bytes = *fromHex(
        "24410600082621532131081504419390060740418306000000fffffbfdff0015060000002c02dc0c00000000"
        "1f");
    DecodeResult r = decodeOne(bytes);
    ASSERT_EQ(r.positions.size(), 1u);
    const Position& p = r.positions[0];
    EXPECT_EQ(p.deviceId, "4106000826");
    EXPECT_EQ(p.speedKmh, 0);
    EXPECT_EQ(*p.course, 0);
    EXPECT_EQ(std::get<std::int64_t>(*p.get(attr::kBatteryLevel)), 100);  // level 6
    EXPECT_EQ(std::get<std::string>(*p.get(attr::kAlarm)), "sos");        // bit 1 low
    EXPECT_TRUE(r.response.empty());
  }
  {
    // 42-byte frame: 8-byte IMEI id.
    auto bytes = *fromHex(
        "2435248308419329301047591808172627335900074412294E024138FEFFFFFFFF0112"
        "0064BA73005ECC");
    DecodeResult r = decodeOne(bytes);
    ASSERT_EQ(r.positions.size(), 1u);
    EXPECT_EQ(r.positions[0].deviceId, "352483084193293");
    EXPECT_EQ(r.positions[0].deviceTimeUs, *test::parseCorpusTime("2017-08-18 10:47:59.000"));
    EXPECT_NEAR(r.positions[0].speedKmh, 24 * kKnotsToKmh, 1e-9);
    EXPECT_NEAR(*r.positions[0].course, 138, 1e-9);
  }
  {
    // NBR with a seconds field of 69 rolls over into the next minute.
    DecodeResult r = decodeOne(
        "*HQ,1400046168,NBR,160169,460,0,1,4,9338,3692,150,9338,3691,145,9338,3690,140,9338,"
        "3692,139,180813,FFFFFBFF#");
    ASSERT_EQ(r.positions.size(), 1u);
    EXPECT_FALSE(r.positions[0].hasLocation);
    EXPECT_EQ(r.positions[0].deviceTimeUs, *test::parseCorpusTime("2013-08-18 16:02:09.000"));
    EXPECT_EQ(r.response, std::string("*HQ,1400046168,V4,NBR,") + kNowLong + "#");
  }
  {
    // V4 answers: the answer goes to commandAnswer and the "result" attribute.
    DecodeResult r = decodeOne(
        "*TH,2020916012,V4,S20,DONE,130305,050316,A,2212.8745,N,11346.6574,E,14.28,028,220902,"
        "F7FFFBFF#");
    ASSERT_EQ(r.positions.size(), 1u);
    ASSERT_TRUE(r.commandAnswer);
    EXPECT_EQ(r.commandAnswer->text, "S20,DONE,130305");
    EXPECT_EQ(std::get<std::string>(*r.positions[0].get(attr::kResult)), "S20,DONE,130305");
    EXPECT_EQ(r.positions[0].deviceTimeUs, *test::parseCorpusTime("2002-09-22 05:03:16.000"));
    EXPECT_TRUE(r.response.empty());
  }
  {
    // V19: "ddmmyy,,ip,iccid,status" — the date is read as a date (not as a battery level,
    // which would lose the time and swallow the status into the SIM fields).
    DecodeResult r = decodeOne(
        "*HQ,4209951296,V19,214452,A,5201.0178,N,01830.5029,E,000.00,000,200417,,195.63.13.195,"
        "89480610500392633029,BFFFFBFF#");
    ASSERT_EQ(r.positions.size(), 1u);
    EXPECT_EQ(r.positions[0].deviceTimeUs, *test::parseCorpusTime("2017-04-20 21:44:52.000"));
    EXPECT_EQ(std::get<std::int64_t>(*r.positions[0].get(attr::kStatus)), 0xBFFFFBFF);
    // No date at all: the device means "now".
    r = decodeOne("*HQ,353505220873067,V1,,V,4605.75732,N,01430.73863,E,0.00,0,,FFFFFFEF,125#");
    ASSERT_EQ(r.positions.size(), 1u);
    EXPECT_EQ(r.positions[0].deviceTimeUs, kNow);
  }
  {
    // LINK: a status message without a fix.
    DecodeResult r = decodeOne("*HQ,1600068860,LINK,112137,20,8,67,0,0,081116,FFFFFBFF#");
    ASSERT_EQ(r.positions.size(), 1u);
    const Position& p = r.positions[0];
    EXPECT_FALSE(p.hasLocation);
    EXPECT_EQ(std::get<std::int64_t>(*p.get(attr::kRssi)), 20);
    EXPECT_EQ(std::get<std::int64_t>(*p.get("sat")), 8);
    EXPECT_EQ(std::get<std::int64_t>(*p.get(attr::kBatteryLevel)), 67);
    EXPECT_EQ(p.deviceTimeUs, *test::parseCorpusTime("2016-11-08 11:21:37.000"));
  }
}

// ---- 2. the frame decoder cases --------------------------------------------------------------

TEST(H02Split, FrameDecoderCases) {
  auto cases = test::loadSplitCases("h02");
  ASSERT_EQ(cases.size(), 10u);
  for (const auto& c : cases) {
    auto codec = makeCodec();
    std::string_view input = c.input;
    FrameResult r{};
    while (true) {
      r = codec->splitFrame(input);
      if (r.status != FrameStatus::kSkip) break;
      input.remove_prefix(r.size);
    }
    if (c.expectedFrame) {
      ASSERT_EQ(r.status, FrameStatus::kOk) << c.source;
      EXPECT_EQ(toHex(input.substr(0, r.size)), toHex(*c.expectedFrame)) << c.source;
    } else {
      EXPECT_EQ(r.status, FrameStatus::kNeedMore) << c.source;
    }
  }
}

// ---- 3. streams ------------------------------------------------------------------------------

TEST(H02Split, TextFramesByteByByte) {
  std::string stream;
  std::vector<std::string> want;
  for (const auto& f : test::loadCorpus("h02")) {
    if (!isText(f)) continue;
    stream += f.bytes;
    want.push_back(withoutLineEnd(f.bytes));
  }
  auto codec = makeCodec();
  std::string problem;
  auto got = splitByteByByte(*codec, stream, problem);
  EXPECT_EQ(problem, "");
  EXPECT_EQ(got, want);
}

// '$' frames have no length and no delimiter: byte by byte, each ends when the connection's size
// is known (configured, as Traccar's h02.messageLength, or learnt from a frame followed by the
// next).
TEST(H02Split, BinaryFramesByteByByteWithTheConnectionsSize) {
  std::map<std::size_t, std::vector<std::string>> bySize;
  for (const auto& f : test::loadCorpus("h02")) {
    if (!isText(f)) bySize[f.bytes.size()].push_back(f.bytes);
  }
  ASSERT_EQ(bySize.size(), 5u);  // 32, 42, 45, 46, 48
  for (const auto& [size, frames] : bySize) {
    std::string stream;
    for (const auto& f : frames) stream += f;
    auto configured = createH02CodecWithLength(size);
    std::string problem;
    EXPECT_EQ(splitByteByByte(*configured, stream, problem), frames) << size;
    EXPECT_EQ(problem, "") << size;
    // Learnt: two frames in one read teach the size, then byte by byte.
    auto learning = makeCodec();
    std::string twice = frames.front() + frames.front();
    auto first = learning->splitFrame(twice);
    ASSERT_EQ(first.status, FrameStatus::kOk);
    EXPECT_EQ(first.size, size);
    std::string problem2;
    EXPECT_EQ(splitByteByByte(*learning, stream, problem2), frames) << size;
    EXPECT_EQ(problem2, "") << size;
  }
}

// A device's real stream: its text frames and binary frames of its one size, byte by byte.
TEST(H02Split, MixedStreamByteByByte) {
  auto corpus = test::loadCorpus("h02");
  for (std::size_t size : {std::size_t{32}, std::size_t{45}}) {
    std::vector<std::string> want;
    std::string stream;
    for (const auto& f : corpus) {
      if (!isText(f) && f.bytes.size() != size) continue;
      want.push_back(isText(f) ? withoutLineEnd(f.bytes) : f.bytes);
      stream += f.bytes;
    }
    auto codec = createH02CodecWithLength(size);
    std::string problem;
    EXPECT_EQ(splitByteByByte(*codec, stream, problem), want) << size;
    EXPECT_EQ(problem, "") << size;
  }
}

TEST(H02Split, CoalescedAndWithGarbage) {
  auto corpus = test::loadCorpus("h02");
  std::vector<std::string> want;
  std::string stream;
  std::string noisy = std::string("\x01\x02noise$\xff\xff\xff*#\x00X\x99", 16);
  for (std::size_t i = 0; i < corpus.size(); ++i) {
    const auto& f = corpus[i];
    want.push_back(isText(f) ? withoutLineEnd(f.bytes) : f.bytes);
    stream += f.bytes;
    // Garbage can follow a text frame (it ends at '#'); after a binary frame any bytes could be
    // its tail, so garbage there is not recoverable by any splitter.
    if (isText(f))
      noisy += f.bytes + "garbage$\x13\x99*?X\xff\xff\xff\xff\xff\xff\r\n";
    else
      noisy += f.bytes;
  }
  auto codec = makeCodec();
  std::string problem;
  EXPECT_EQ(splitAll(*codec, stream, &problem), want);
  EXPECT_EQ(problem, "");
  auto codec2 = makeCodec();
  EXPECT_EQ(splitAll(*codec2, noisy, &problem), want);
  EXPECT_EQ(problem, "");
}

TEST(H02Split, TooLargeAndResync) {
  auto codec = makeCodec();
  std::string endless = "*HQ," + std::string(9000, '1');
  EXPECT_EQ(codec->splitFrame(endless).status, FrameStatus::kTooLarge);
  EXPECT_EQ(codec->splitFrame(endless.substr(0, 100)).status, FrameStatus::kNeedMore);
  // Not a frame start: skipped up to the next marker.
  FrameResult skip = codec->splitFrame("abc*HQ,1,V0#");
  EXPECT_EQ(skip.status, FrameStatus::kSkip);
  EXPECT_EQ(skip.size, 3u);
  // A marker that does not start a frame is dropped alone.
  skip = codec->splitFrame("*\xff\xff\xff#");
  EXPECT_EQ(skip.status, FrameStatus::kSkip);
  EXPECT_EQ(skip.size, 1u);
  skip = codec->splitFrame(std::string("$\x41\x06\x01\x16\x60\x99\x99\x99\x99\x99\x99", 12));
  EXPECT_EQ(skip.status, FrameStatus::kSkip);
  EXPECT_EQ(skip.size, 1u);
}

// ---- 4. known values -------------------------------------------------------------------------

void expectFix(const Position& p, const enc::Fix& f, double tolerance) {
  EXPECT_TRUE(p.hasLocation);
  EXPECT_EQ(p.valid, f.valid);
  EXPECT_NEAR(p.latitude, f.latitude, tolerance);
  EXPECT_NEAR(p.longitude, f.longitude, tolerance);
  EXPECT_EQ(p.deviceTimeUs, *civilToMicros(f.year, f.month, f.day, f.hour, f.minute, f.second));
  ASSERT_TRUE(p.course);
  EXPECT_NEAR(*p.course, f.course, 1e-9);
  EXPECT_EQ(p.deviceId, f.id);
}

std::vector<enc::Fix> knownFixes() {
  std::vector<enc::Fix> fixes(4);
  fixes[0].latitude = -33.868820;  // south, east
  fixes[0].longitude = 151.209296;
  fixes[0].speedKnots = 12.5;
  fixes[0].course = 271;
  fixes[1].latitude = 40.712776;  // north, west
  fixes[1].longitude = -74.005974;
  fixes[1].speedKnots = 0;
  fixes[1].course = 0;
  fixes[1].year = 2031;
  fixes[1].month = 1;
  fixes[1].day = 1;
  fixes[1].hour = 0;
  fixes[1].minute = 0;
  fixes[1].second = 0;
  fixes[2].latitude = -0.000123;  // just south-west of 0/0, no fix
  fixes[2].longitude = -0.5;
  fixes[2].valid = false;
  fixes[2].speedKnots = 99;
  fixes[2].course = 359;
  fixes[3].latitude = 89.999999;
  fixes[3].longitude = -179.999999;
  fixes[3].speedKnots = 500.25;
  fixes[3].course = 180;
  fixes[3].status = 0xFFF7FBFF;  // bit 19 low: power cut
  return fixes;
}

TEST(H02Known, TextV1RoundTripAndAck) {
  for (const auto& f : knownFixes()) {
    std::string frame = enc::textV1(f);
    auto codec = makeCodec();
    SessionState session;
    FrameResult split = codec->splitFrame(frame + "\r\n");
    ASSERT_EQ(split.status, FrameStatus::kOk) << frame;
    ASSERT_EQ(split.size, frame.size());
    DecodeResult r = codec->decode(frame, session, kNow);
    ASSERT_EQ(r.positions.size(), 1u) << frame;
    // Minutes with 4 decimals: 1/600000 of a degree.
    expectFix(r.positions[0], f, 1.0 / 600000);
    EXPECT_NEAR(r.positions[0].speedKmh, std::round(f.speedKnots * 100) / 100 * kKnotsToKmh, 1e-9);
    EXPECT_EQ(std::get<std::int64_t>(*r.positions[0].get(attr::kStatus)), f.status);
    EXPECT_EQ(r.response, "*HQ," + f.id + ",V4,V1," + kNowLong + "#");
    EXPECT_EQ(session.deviceId, f.id);
  }
  // Power cut from status bit 19.
  auto codec = makeCodec();
  SessionState session;
  DecodeResult r = codec->decode(enc::textV1(knownFixes()[3]), session, kNow);
  EXPECT_EQ(std::get<std::string>(*r.positions[0].get(attr::kAlarm)), "powerCut");
}

TEST(H02Known, BinaryRoundTripWithoutAck) {
  for (std::size_t size : {std::size_t{32}, std::size_t{45}}) {
    for (const auto& f : knownFixes()) {
      std::string frame = enc::binary(f, size);
      ASSERT_EQ(frame.size(), size);
      auto codec = makeCodec();
      SessionState session;
      FrameResult split = codec->splitFrame(frame);
      ASSERT_EQ(split.status, FrameStatus::kOk);
      ASSERT_EQ(split.size, size);
      DecodeResult r = codec->decode(frame, session, kNow);
      ASSERT_EQ(r.positions.size(), 1u);
      expectFix(r.positions[0], f, 1.0 / 600000);
      EXPECT_NEAR(r.positions[0].speedKmh, std::round(f.speedKnots) * kKnotsToKmh, 1e-9);
      EXPECT_TRUE(r.response.empty());
    }
  }
}

TEST(H02Known, HeartbeatAndOptionalAck) {
  auto codec = makeCodec();
  SessionState session;
  DecodeResult r = codec->decode("*HQ,135790246811220,HTBT,87#", session, kNow);
  EXPECT_EQ(r.response, "*HQ,135790246811220,HTBT#");
  ASSERT_EQ(r.positions.size(), 1u);
  EXPECT_EQ(std::get<std::int64_t>(*r.positions[0].get(attr::kBatteryLevel)), 87);
  r = codec->decode("*HQ,4210051415,V0#", session, kNow);
  EXPECT_EQ(r.response, "*HQ,4210051415,V0#");
  EXPECT_TRUE(r.positions.empty());
  // h02.ack: other position types get "*HQ,<id>,R12,<HHmmss>#".
  session.setExtra("ack", "true");
  enc::Fix f;
  f.latitude = 1;
  f.longitude = 2;
  r = codec->decode(enc::textV1(f, "V5"), session, kNow);
  ASSERT_EQ(r.positions.size(), 1u);
  EXPECT_EQ(r.response, "*HQ," + f.id + ",R12," + kNowShort + "#");
  r = codec->decode(enc::textV1(f, "V1"), session, kNow);
  EXPECT_EQ(r.response, "*HQ," + f.id + ",V4,V1," + kNowLong + "#");
}

TEST(H02Known, SessionRules) {
  auto codec = makeCodec();
  SessionState session;
  session.accept = [](const std::string& id) { return id == "4210051415"; };
  // A frame without id before any identified frame: dropped, no answer.
  enc::Fix f;
  f.latitude = 10;
  f.longitude = 20;
  f.id = "";
  DecodeResult r = codec->decode(enc::textV1(f), session, kNow);
  EXPECT_TRUE(r.positions.empty());
  EXPECT_TRUE(r.response.empty());
  // A rejected device: nothing either.
  f.id = "1111111111";
  r = codec->decode(enc::textV1(f), session, kNow);
  EXPECT_TRUE(r.positions.empty());
  EXPECT_TRUE(r.response.empty());
  r = codec->decode(enc::binary(f), session, kNow);
  EXPECT_TRUE(r.positions.empty());
  // Accepted, then an id-less frame reuses the session.
  f.id = "4210051415";
  r = codec->decode(enc::textV1(f), session, kNow);
  ASSERT_EQ(r.positions.size(), 1u);
  f.id = "";
  r = codec->decode(enc::textV1(f), session, kNow);
  ASSERT_EQ(r.positions.size(), 1u);
  EXPECT_EQ(r.positions[0].deviceId, "4210051415");
}

TEST(H02Known, GarbageNeverCrashesOrLeaksCoordinates) {
  auto codec = makeCodec();
  SessionState session;
  for (const char* text :
       {"*HQ,1,V1,999999,A,9999.9999,N,99999.9999,E,1,1,010101,FFFFFFFF#", "*HQ#", "*HQ,#",
        "*HQ,1,V4,#", "*HQ,1,NBR,1,2,3#", "*HQ,1,V3,#", "*hq,1,VP1,A,9959.0,N,1.0,E,1.0,1.0,1#",
        "*HQ,1,V1,,A,-1-1.0,N,-999-1.0,W,1,1,,FFFFFFFF#"}) {
    DecodeResult r = codec->decode(text, session, kNow);
    for (const auto& p : r.positions) {
      if (p.hasLocation) {
        EXPECT_LE(std::fabs(p.latitude), 90) << text;
        EXPECT_LE(std::fabs(p.longitude), 180) << text;
      }
    }
  }
}

// ---- 5. commands -----------------------------------------------------------------------------

TEST(H02Commands, EncodeAndAnswers) {
  auto codec = makeCodec();
  SessionState session;
  EXPECT_FALSE(codec->encodeCommand({CommandType::kEngineStop, "", 1}, session));  // no id yet
  // Identify the device; the command time is the last frame's server time.
  codec->decode("*HQ,4210051415,V0#", session, kNow);
  auto encode = [&](CommandType type, const std::string& text = "") {
    return codec->encodeCommand({type, text, 1}, session).value_or("<none>");
  };
  EXPECT_EQ(encode(CommandType::kEngineStop), "*HQ,4210051415,S20,221320,1,1#");
  EXPECT_EQ(encode(CommandType::kEngineResume), "*HQ,4210051415,S20,221320,1,0#");
  EXPECT_EQ(encode(CommandType::kPositionSingle), "*HQ,4210051415,R12,221320#");
  EXPECT_EQ(encode(CommandType::kCustom, "S71,22,30"), "*HQ,4210051415,S71,221320,22,30#");
  EXPECT_EQ(encode(CommandType::kCustom, "R1"), "*HQ,4210051415,R1,221320#");
  EXPECT_EQ(encode(CommandType::kCustom, "*HQ,4210051415,D1,000000,30,1#"),
            "*HQ,4210051415,D1,000000,30,1#");
  EXPECT_EQ(encode(CommandType::kCustom, "S1,a#b"), "<none>");
  EXPECT_EQ(encode(CommandType::kCustom, ""), "<none>");
  EXPECT_EQ(encode(CommandType::kCustomHex, "2a48512c31233"), "<none>");
  EXPECT_EQ(encode(CommandType::kCustomHex, "2a48512c3123"), "*HQ,1#");
  // A caller-supplied time wins over the last frame's.
  session.setExtra("serverTimeUs", std::to_string(kNow + 3'600'000'000));
  EXPECT_EQ(encode(CommandType::kEngineStop), "*HQ,4210051415,S20,231320,1,1#");

  // The device confirms with a V4 frame carrying its position.
  DecodeResult r = codec->decode(
      "*HQ,4210051415,V4,S20,DONE,221320,221325,A,2212.8745,N,11346.6574,E,0.00,000,141123,"
      "FFFFFBFF#",
      session, kNow);
  ASSERT_TRUE(r.commandAnswer);
  EXPECT_EQ(r.commandAnswer->text, "S20,DONE,221320");
  ASSERT_EQ(r.positions.size(), 1u);
  EXPECT_EQ(r.positions[0].deviceTimeUs, *civilToMicros(2023, 11, 14, 22, 13, 25));
  // Free-text answers (SMS) span lines.
  r = codec->decode("*HQ,4210051415,SMS,ID:4210051415\nVOLT:12.9V#", session, kNow);
  ASSERT_TRUE(r.commandAnswer);
  EXPECT_EQ(r.commandAnswer->text, "ID:4210051415\nVOLT:12.9V");
  ASSERT_EQ(r.positions.size(), 1u);
  EXPECT_FALSE(r.positions[0].hasLocation);
}

}  // namespace
}  // namespace tern::codec::trackers
