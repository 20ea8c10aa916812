#include "tools/tracker_frames/tracker_frames.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "codec/trackers/util.h"
#include "tools/tracker_frames/gl200_encoder.h"
#include "tools/tracker_frames/gt06_encoder.h"
#include "tools/tracker_frames/h02_encoder.h"
#include "tools/tracker_frames/ruptela_encoder.h"
#include "tools/tracker_frames/teltonika_encoder.h"
#include "tools/tracker_frames/tk103_encoder.h"

namespace tern::tools {

namespace {

namespace trk = codec::trackers;

constexpr double kKmhPerKnot = 1.852;
// The server's clock in a time-stamped answer may differ from ours by this much (it is taken
// when the answer is built, after the commit).
constexpr std::int64_t kAnswerClockSlackUs = 120'000'000;
constexpr std::size_t kMaxHttpAnswer = 16 * 1024;

std::string imeiText(std::uint64_t imei) {
  return fmt::format("{:015}", imei);
}

ExpectedAck exact(std::string bytes) {
  return {AckKind::kExact, std::move(bytes), {}};
}

TrackerFrame frame(FrameKind kind, std::string bytes, ExpectedAck ack, unsigned records) {
  return {kind, std::move(bytes), std::move(ack), records};
}

std::string twoDigits(int v) {
  return fmt::format("{:02}", v);
}

// yymmddhhmmss-style stamps are built from these.
std::string yymmdd(const CivilTime& t) {
  return fmt::format("{:02}{:02}{:02}", t.year % 100, t.month, t.day);
}
std::string hhmmss(const CivilTime& t) {
  return fmt::format("{:02}{:02}{:02}", t.hour, t.minute, t.second);
}

// Degrees → "ddmm.mmmm" / "dddmm.mmmm" (NMEA), unsigned.
std::string nmea(double degrees, int degreeDigits) {
  const double a = std::fabs(degrees);
  int whole = static_cast<int>(a);
  long minutes10k = std::lround((a - whole) * 60 * 10000);
  if (minutes10k >= 600000) {
    ++whole;
    minutes10k -= 600000;
  }
  return fmt::format("{:0{}}{:02}.{:04}", whole, degreeDigits, minutes10k / 10000,
                     minutes10k % 10000);
}

// ---- GT06 ------------------------------------------------------------------------------------

class Gt06Encoder final : public TrackerDeviceEncoder {
 public:
  explicit Gt06Encoder(std::uint64_t imei) : id_(imeiText(imei)) {}
  const std::string& deviceId() const override { return id_; }

  std::optional<TrackerFrame> login() override {
    const std::uint16_t serial = next();
    // Answer: 78 78 05 01 <serial> <CRC-X25> 0D 0A.
    return frame(FrameKind::kLogin, frames::gt06::login(id_, serial),
                 exact(frames::gt06::shortAck(0x01, serial)), 0);
  }

  TrackerFrame position(const DeviceFix& fix) override {
    const CivilTime t = civilFromMicros(fix.timeUs);
    frames::gt06::Fix f;
    f.year = t.year;
    f.month = t.month;
    f.day = t.day;
    f.hour = t.hour;
    f.minute = t.minute;
    f.second = t.second;
    f.latitude = fix.latitude;
    f.longitude = fix.longitude;
    f.speedKmh = std::clamp(static_cast<int>(std::lround(fix.speedKmh)), 0, 255);
    f.course = static_cast<int>(std::lround(fix.course)) % 360;
    f.valid = fix.valid;
    f.satellites = std::clamp(fix.satellites, 0, 15);
    f.accKnown = true;
    f.accOn = fix.ignition;
    ignition_ = fix.ignition;
    const std::uint16_t serial = next();
    return frame(FrameKind::kPosition, frames::gt06::gpsLbs1(f, serial),
                 exact(frames::gt06::shortAck(0x12, serial)), 1);
  }

  // 0x13 status: answered like any report; Traccar (and so Tern) keeps it as a status record.
  std::optional<TrackerFrame> heartbeat() override {
    const std::uint16_t serial = next();
    const unsigned info = frames::gt06::terminalInfo(ignition_, true, 0, false);
    return frame(FrameKind::kHeartbeat, frames::gt06::status(info, 6, 4, 0, serial),
                 exact(frames::gt06::shortAck(0x13, serial)), 1);
  }

 private:
  std::uint16_t next() { return ++serial_; }
  std::string id_;
  std::uint16_t serial_ = 0;
  bool ignition_ = false;
};

// ---- Teltonika -------------------------------------------------------------------------------

class TeltonikaEncoder final : public TrackerDeviceEncoder {
 public:
  explicit TeltonikaEncoder(std::uint64_t imei) : id_(imeiText(imei)) {}
  const std::string& deviceId() const override { return id_; }

  std::optional<TrackerFrame> login() override {
    return frame(FrameKind::kLogin, frames::teltonika::imeiPacket(id_),
                 exact(std::string(1, '\x01')), 0);
  }

  TrackerFrame position(const DeviceFix& fix) override {
    frames::teltonika::Record r;
    r.timeMs = static_cast<std::uint64_t>(fix.timeUs / 1000);
    r.latitude = fix.latitude;
    r.longitude = fix.longitude;
    r.altitude = static_cast<std::int16_t>(std::lround(fix.altitude));
    r.angle = static_cast<std::uint16_t>(std::lround(fix.course) % 360);
    r.satellites = static_cast<std::uint8_t>(fix.valid ? std::clamp(fix.satellites, 1, 255) : 0);
    r.speedKmh = static_cast<std::uint16_t>(std::lround(std::max(0.0, fix.speedKmh)));
    r.io = {{239, frames::teltonika::be(fix.ignition ? 1 : 0, 1)},
            {240, frames::teltonika::be(fix.speedKmh > 0 ? 1 : 0, 1)},
            {16, frames::teltonika::be(fix.odometerM, 4)}};
    // Answer: the record count as 4 bytes big-endian.
    return frame(FrameKind::kPosition, frames::teltonika::encodeAvl(0x08, {r}),
                 exact(frames::teltonika::be(1, 4)), 1);
  }

  // The lone 0xFF keep-alive: no answer.
  std::optional<TrackerFrame> heartbeat() override {
    return frame(FrameKind::kHeartbeat, std::string(1, '\xFF'), {}, 0);
  }

 private:
  std::string id_;
};

// ---- H02 -------------------------------------------------------------------------------------

class H02Encoder final : public TrackerDeviceEncoder {
 public:
  explicit H02Encoder(std::uint64_t imei) : id_(imeiText(imei)) {}
  const std::string& deviceId() const override { return id_; }

  std::optional<TrackerFrame> login() override { return std::nullopt; }

  TrackerFrame position(const DeviceFix& fix) override {
    const CivilTime t = civilFromMicros(fix.timeUs);
    frames::h02::Fix f;
    f.id = id_;
    f.year = t.year;
    f.month = t.month;
    f.day = t.day;
    f.hour = t.hour;
    f.minute = t.minute;
    f.second = t.second;
    f.latitude = fix.latitude;
    f.longitude = fix.longitude;
    f.speedKnots = std::max(0.0, fix.speedKmh) / kKmhPerKnot;
    f.course = static_cast<int>(std::lround(fix.course)) % 360;
    f.valid = fix.valid;
    // Active-low status word; bit 10 is the ignition.
    f.status = fix.ignition ? 0xFFFFFFFFu : 0xFFFFFBFFu;
    ExpectedAck ack;
    // Answer: *HQ,<id>,V4,V1,<server UTC yyyyMMddHHmmss>#.
    ack.kind = AckKind::kTimeStamped;
    ack.bytes = "*HQ,";
    ack.bytes += id_;
    ack.bytes += ",V4,V1,";
    ack.suffix = "#";
    return frame(FrameKind::kPosition, frames::h02::textV1(f), std::move(ack), 1);
  }

  // HTBT: echoed up to the type.
  std::optional<TrackerFrame> heartbeat() override {
    std::string text = "*HQ,";
    text += id_;
    text += ",HTBT#";
    return frame(FrameKind::kHeartbeat, text, exact(text), 0);
  }

 private:
  std::string id_;
};

// ---- TK103 -----------------------------------------------------------------------------------

class Tk103Encoder final : public TrackerDeviceEncoder {
 public:
  explicit Tk103Encoder(std::uint64_t imei) : id_(imeiText(imei).substr(3)) {}
  const std::string& deviceId() const override { return id_; }

  // BP00 handshake, answered (<id>AP01HSO); it stores nothing.
  std::optional<TrackerFrame> login() override { return handshake(FrameKind::kLogin); }
  std::optional<TrackerFrame> heartbeat() override { return handshake(FrameKind::kHeartbeat); }

  TrackerFrame position(const DeviceFix& fix) override {
    const CivilTime t = civilFromMicros(fix.timeUs);
    frames::tk103::Fix f;
    f.id = id_;
    f.year = t.year;
    f.month = t.month;
    f.day = t.day;
    f.hour = t.hour;
    f.minute = t.minute;
    f.second = t.second;
    f.latitude = fix.latitude;
    f.longitude = fix.longitude;
    f.speedKmh = std::min(999.9, std::max(0.0, fix.speedKmh));
    f.course = std::fmod(fix.course, 360.0);
    f.valid = fix.valid;
    // io: charge, ignition, three inputs, fuel (3 hex).
    f.io = fix.ignition ? "01000000" : "00000000";
    f.odometer = static_cast<std::uint32_t>(fix.odometerM);
    return frame(FrameKind::kPosition, frames::tk103::br00(f), {}, 1);  // BR00: no answer
  }

 private:
  TrackerFrame handshake(FrameKind kind) {
    std::string text = "(";
    text += id_;
    text += "BP00";
    text += id_;
    text += "HSO)";
    std::string answer = "(";
    answer += id_;
    answer += "AP01HSO)";
    return frame(kind, std::move(text), exact(std::move(answer)), 0);
  }
  std::string id_;
};

// ---- GPS103 ----------------------------------------------------------------------------------

class Gps103Encoder final : public TrackerDeviceEncoder {
 public:
  explicit Gps103Encoder(std::uint64_t imei) : id_(imeiText(imei)) {}
  const std::string& deviceId() const override { return id_; }

  std::optional<TrackerFrame> login() override {
    std::string text = "##,imei:";
    text += id_;
    text += ",A;";
    return frame(FrameKind::kLogin, std::move(text), exact("LOAD"), 0);
  }

  std::optional<TrackerFrame> heartbeat() override {
    std::string text = id_;
    text += ';';
    return frame(FrameKind::kHeartbeat, std::move(text), exact("ON"), 0);
  }

  // imei:<imei>,tracker,<local yymmddhhmm>,,F,<hhmmss.sss UTC>,A,<lat>,N,<lon>,E,<knots>,<course>,
  // <altitude>,<acc>,<door>,<fuel1>,<fuel2>,<temp>; — local time = UTC (a device in UTC+0).
  TrackerFrame position(const DeviceFix& fix) override {
    const CivilTime t = civilFromMicros(fix.timeUs);
    std::string text = "imei:";
    text += id_;
    text += ",tracker,";
    text += yymmdd(t);
    text += twoDigits(t.hour);
    text += twoDigits(t.minute);
    text += ",,F,";
    text += hhmmss(t);
    text += ".000,";
    text += fix.valid ? "A," : "V,";
    text += nmea(fix.latitude, 2);
    text += fix.latitude < 0 ? ",S," : ",N,";
    text += nmea(fix.longitude, 3);
    text += fix.longitude < 0 ? ",W," : ",E,";
    text += fmt::format("{:.2f},{:.2f},{:.1f},{},0,,,;", std::max(0.0, fix.speedKmh) / kKmhPerKnot,
                        std::fmod(fix.course, 360.0), fix.altitude, fix.ignition ? 1 : 0);
    return frame(FrameKind::kPosition, std::move(text), {}, 1);  // positions are not answered
  }

 private:
  std::string id_;
};

// ---- Queclink GL200 family -------------------------------------------------------------------

class Gl200Encoder final : public TrackerDeviceEncoder {
 public:
  explicit Gl200Encoder(std::uint64_t imei) : id_(imeiText(imei)) {}
  const std::string& deviceId() const override { return id_; }

  std::optional<TrackerFrame> login() override { return std::nullopt; }

  // +ACK:GTHBD → +SACK:GTHBD,<protocol version>,<count number>$.
  std::optional<TrackerFrame> heartbeat() override {
    const std::string count = nextCount();
    std::string answer = "+SACK:GTHBD,";
    answer += kVersion;
    answer += ',';
    answer += count;
    answer += '$';
    return frame(FrameKind::kHeartbeat, frames::gl200::encodeHeartbeat(kVersion, id_, count),
                 exact(std::move(answer)), 0);
  }

  // GTFRI: not answered unless the server has gl200.ack on.
  TrackerFrame position(const DeviceFix& fix) override {
    const CivilTime t = civilFromMicros(fix.timeUs);
    frames::gl200::Fix f;
    f.latitude = fix.latitude;
    f.longitude = fix.longitude;
    f.year = t.year;
    f.month = t.month;
    f.day = t.day;
    f.hour = t.hour;
    f.minute = t.minute;
    f.second = t.second;
    f.speedKmh = std::max(0.0, fix.speedKmh);
    f.course = static_cast<int>(std::lround(fix.course)) % 360;
    f.altitude = fix.altitude;
    f.accuracy = fix.valid ? 1 : 0;
    frames::gl200::FriReport report;
    report.version = kVersion;
    report.imei = id_;
    report.fixes = {f};
    report.mileageKm = static_cast<double>(fix.odometerM) / 1000.0;
    // Device status: 21/22 ignition on (stopped/moving), 11/12 ignition off.
    report.status = fix.ignition ? (fix.speedKmh > 0 ? "220100" : "210100") : "110000";
    report.sendTime = frames::gl200::timeText(t.year, t.month, t.day, t.hour, t.minute, t.second);
    report.count = nextCount();
    return frame(FrameKind::kPosition, frames::gl200::encodeFri(report), {}, 1);
  }

 private:
  static constexpr const char* kVersion = "060100";  // GV300
  std::string nextCount() {
    count_ = static_cast<std::uint16_t>(count_ + 1);
    return fmt::format("{:04X}", count_);
  }
  std::string id_;
  std::uint16_t count_ = 0;
};

// ---- Meitrack --------------------------------------------------------------------------------

// $$<flag><length>,<content>*<sum>\r\n (device) or @@… (server): the length counts from the first
// comma through CR LF; the sum is of every byte up to and including '*', mod 256, as 2 hex digits.
std::string meitrackMessage(const char* start, char flag, std::string_view content) {
  const std::size_t length = 1 + content.size() + 5;  // ',' content '*' XX CR LF
  std::string out = start;
  out.push_back(flag);
  out += fmt::format("{:02}", length);
  out += ',';
  out += content;
  out += '*';
  unsigned sum = 0;
  for (char c : out) sum += static_cast<unsigned char>(c);
  out += fmt::format("{:02X}", sum & 0xFF);
  out += "\r\n";
  return out;
}

class MeitrackEncoder final : public TrackerDeviceEncoder {
 public:
  explicit MeitrackEncoder(std::uint64_t imei) : id_(imeiText(imei)) {}
  const std::string& deviceId() const override { return id_; }

  // AAC is answered @@z27,<imei>,AAC,1*XX; no position.
  std::optional<TrackerFrame> login() override { return aac(FrameKind::kLogin); }
  std::optional<TrackerFrame> heartbeat() override { return aac(FrameKind::kHeartbeat); }

  // AAA event 35 (time-interval track): not answered.
  TrackerFrame position(const DeviceFix& fix) override {
    const CivilTime t = civilFromMicros(fix.timeUs);
    std::string content = id_;
    content += ",AAA,35,";
    content += fmt::format("{:.6f},{:.6f},", fix.latitude, fix.longitude);
    content += yymmdd(t);
    content += hhmmss(t);
    // A|V, satellites, GSM, km/h, course, HDOP, altitude, odometer m, runtime s, cell, io
    // (inputs, outputs: ACC on input bit 2), analog inputs / battery / power.
    content += fmt::format(",{},{},20,{:.0f},{:.0f},1.0,{:.0f},{},{},460|0|287D|1F71,{:02X}00,",
                           fix.valid ? 'A' : 'V', fix.satellites, std::max(0.0, fix.speedKmh),
                           std::fmod(fix.course, 360.0), fix.altitude, fix.odometerM, runtime_,
                           fix.ignition ? 0x04 : 0x00);
    content += "0000|0000|0000|0191|0573,1,,";
    runtime_ += 1;
    flag_ = flag_ == 'Z' ? 'A' : static_cast<char>(flag_ + 1);
    return frame(FrameKind::kPosition, meitrackMessage("$$", flag_, content), {}, 1);
  }

 private:
  TrackerFrame aac(FrameKind kind) {
    std::string content = id_;
    content += ",AAC,1";
    return frame(kind, meitrackMessage("$$", 'z', content),
                 exact(meitrackMessage("@@", 'z', content)), 0);
  }
  std::string id_;
  std::uint64_t runtime_ = 0;
  char flag_ = 'A';
};

// ---- Ruptela ---------------------------------------------------------------------------------

// The server's short answers: LEN 00 02, <command>, 01, CRC-16/KERMIT of those two, big-endian.
std::string ruptelaAck(std::uint8_t command) {
  std::string body;
  body.push_back(static_cast<char>(command));
  body.push_back('\x01');
  std::string out("\x00\x02", 2);
  out += body;
  frames::ruptela::putBe(out, trk::crc16Kermit(body), 2);
  return out;
}

class RuptelaEncoder final : public TrackerDeviceEncoder {
 public:
  explicit RuptelaEncoder(std::uint64_t imei) : imei_(imei), id_(imeiText(imei)) {}
  const std::string& deviceId() const override { return id_; }

  // Command 15 identification (firmware/hardware info as an FM-Eco4 sends it) → 100 + 15.
  std::optional<TrackerFrame> login() override {
    static const std::string kPayload =
        *trk::fromHex("4573303430302e30332e36382e30340000c2b3090d0e950000827b000003e80000003c003c");
    return frame(FrameKind::kLogin, frames::ruptela::packet(imei_, 15, kPayload),
                 exact(ruptelaAck(115)), 0);
  }
  // Command 16 heartbeat → 100 + 16.
  std::optional<TrackerFrame> heartbeat() override {
    return frame(FrameKind::kHeartbeat, frames::ruptela::packet(imei_, 16, {}),
                 exact(ruptelaAck(116)), 0);
  }

  // Command 1 records → 00 02 64 01 13 BC.
  TrackerFrame position(const DeviceFix& fix) override {
    frames::ruptela::Record r;
    r.timeSeconds = static_cast<std::uint32_t>(fix.timeUs / 1'000'000);
    r.latitude = fix.latitude;
    r.longitude = fix.longitude;
    r.altitudeM = std::max(0.0, fix.altitude);
    r.courseDeg = std::fmod(fix.course, 360.0);
    r.satellites = static_cast<std::uint8_t>(fix.valid ? std::clamp(fix.satellites, 1, 255) : 0);
    r.speedKmh = static_cast<std::uint16_t>(std::lround(std::max(0.0, fix.speedKmh)));
    r.hdop = 1.0;
    r.io = {{251, frames::ruptela::be(fix.ignition ? 1 : 0, 1)},
            {65, frames::ruptela::be(fix.odometerM, 4)}};
    return frame(FrameKind::kPosition, frames::ruptela::records(imei_, false, {r}),
                 exact(ruptelaAck(100)), 1);
  }

 private:
  std::uint64_t imei_;
  std::string id_;
};

// ---- OsmAnd (HTTP) ---------------------------------------------------------------------------

class OsmandEncoder final : public TrackerDeviceEncoder {
 public:
  explicit OsmandEncoder(std::uint64_t imei) : id_(imeiText(imei)) {}
  const std::string& deviceId() const override { return id_; }
  std::optional<TrackerFrame> login() override { return std::nullopt; }
  std::optional<TrackerFrame> heartbeat() override { return std::nullopt; }

  // GET /?id=…&timestamp=…&lat=…&lon=…&speed=<knots>&bearing=…&altitude=…&ignition=…&odometer=…
  // on a kept-alive connection, answered 200 after the commit.
  TrackerFrame position(const DeviceFix& fix) override {
    std::string text = "GET /?id=";
    text += id_;
    text += fmt::format(
        "&timestamp={}&lat={:.6f}&lon={:.6f}&speed={:.2f}&bearing={:.1f}&altitude={:.1f}"
        "&valid={}&ignition={}&odometer={}",
        fix.timeUs / 1'000'000, fix.latitude, fix.longitude,
        std::max(0.0, fix.speedKmh) / kKmhPerKnot, std::fmod(fix.course, 360.0), fix.altitude,
        fix.valid ? "true" : "false", fix.ignition ? "true" : "false", fix.odometerM);
    text += " HTTP/1.1\r\nHost: tern\r\nUser-Agent: tern-sim\r\n\r\n";
    return frame(FrameKind::kPosition, std::move(text), {AckKind::kHttpOk, {}, {}}, 1);
  }

 private:
  std::string id_;
};

bool allDigits(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

int number(std::string_view s) {
  int v = 0;
  for (char c : s) v = v * 10 + (c - '0');
  return v;
}

AckMatch matchTimeStamped(const ExpectedAck& expected, std::string_view received,
                          std::int64_t nowUs, std::size_t& consumed) {
  constexpr std::size_t kStampSize = 14;
  const std::size_t total = expected.bytes.size() + kStampSize + expected.suffix.size();
  const std::size_t head = std::min(received.size(), expected.bytes.size());
  if (received.substr(0, head) != std::string_view(expected.bytes).substr(0, head)) {
    return AckMatch::kMismatch;
  }
  if (received.size() < total) return AckMatch::kNeedMore;
  const std::string_view stamp = received.substr(expected.bytes.size(), kStampSize);
  if (!allDigits(stamp) || received.substr(expected.bytes.size() + kStampSize,
                                           expected.suffix.size()) != expected.suffix) {
    return AckMatch::kMismatch;
  }
  const auto at = trk::civilToMicros(number(stamp.substr(0, 4)), number(stamp.substr(4, 2)),
                                     number(stamp.substr(6, 2)), number(stamp.substr(8, 2)),
                                     number(stamp.substr(10, 2)), number(stamp.substr(12, 2)));
  if (!at || std::llabs(*at - nowUs) > kAnswerClockSlackUs) return AckMatch::kMismatch;
  consumed = total;
  return AckMatch::kMatch;
}

// One HTTP/1.x response with status 200 and its Content-Length body.
AckMatch matchHttpOk(std::string_view received, std::size_t& consumed) {
  constexpr std::string_view kStart = "HTTP/1.";
  const std::size_t head = std::min(received.size(), kStart.size());
  if (received.substr(0, head) != kStart.substr(0, head)) return AckMatch::kMismatch;
  const std::size_t end = received.find("\r\n\r\n");
  if (end == std::string_view::npos) {
    return received.size() > kMaxHttpAnswer ? AckMatch::kMismatch : AckMatch::kNeedMore;
  }
  const std::string_view headers = received.substr(0, end);
  if (headers.size() < 12 || headers.substr(8, 4) != " 200") return AckMatch::kMismatch;
  std::size_t bodySize = 0;
  std::size_t pos = 0;
  while ((pos = headers.find("\r\n", pos)) != std::string_view::npos) {
    pos += 2;
    std::string_view line = headers.substr(pos, headers.find("\r\n", pos) - pos);
    constexpr std::string_view kLength = "content-length:";
    if (line.size() > kLength.size()) {
      std::string name(line.substr(0, kLength.size()));
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (name == kLength) {
        std::string_view value = line.substr(kLength.size());
        while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
        if (!allDigits(value) || value.empty() || value.size() > 6) return AckMatch::kMismatch;
        bodySize = static_cast<std::size_t>(number(value));
      }
    }
  }
  const std::size_t total = end + 4 + bodySize;
  if (received.size() < total) return AckMatch::kNeedMore;
  consumed = total;
  return AckMatch::kMatch;
}

}  // namespace

AckMatch matchAck(const ExpectedAck& expected, std::string_view received, std::int64_t nowUs,
                  std::size_t& consumed) {
  consumed = 0;
  switch (expected.kind) {
    case AckKind::kNone:
      return received.empty() ? AckMatch::kNeedMore : AckMatch::kMismatch;
    case AckKind::kExact: {
      const std::size_t n = std::min(received.size(), expected.bytes.size());
      if (received.substr(0, n) != std::string_view(expected.bytes).substr(0, n)) {
        return AckMatch::kMismatch;
      }
      if (n < expected.bytes.size()) return AckMatch::kNeedMore;
      consumed = n;
      return AckMatch::kMatch;
    }
    case AckKind::kTimeStamped:
      return matchTimeStamped(expected, received, nowUs, consumed);
    case AckKind::kHttpOk:
      return matchHttpOk(received, consumed);
  }
  return AckMatch::kMismatch;
}

const std::vector<std::string_view>& simTrackerProtocols() {
  static const std::vector<std::string_view> kNames = {
      "gt06", "teltonika", "h02", "tk103", "gps103", "gl200", "meitrack", "ruptela", "osmand"};
  return kNames;
}

std::uint16_t trackerDefaultPort(std::string_view protocol) {
  // The protocols' usual ports (Traccar's numbering), as in the protocol notes.
  if (protocol == "gt06") return 5023;
  if (protocol == "teltonika") return 5027;
  if (protocol == "h02") return 5013;
  if (protocol == "tk103") return 5002;
  if (protocol == "gps103") return 5001;
  if (protocol == "gl200") return 5004;
  if (protocol == "meitrack") return 5020;
  if (protocol == "ruptela") return 5046;
  if (protocol == "osmand") return 5055;
  return 0;
}

std::unique_ptr<TrackerDeviceEncoder> makeTrackerEncoder(std::string_view protocol,
                                                         std::uint64_t imei) {
  if (protocol == "gt06") return std::make_unique<Gt06Encoder>(imei);
  if (protocol == "teltonika") return std::make_unique<TeltonikaEncoder>(imei);
  if (protocol == "h02") return std::make_unique<H02Encoder>(imei);
  if (protocol == "tk103") return std::make_unique<Tk103Encoder>(imei);
  if (protocol == "gps103") return std::make_unique<Gps103Encoder>(imei);
  if (protocol == "gl200") return std::make_unique<Gl200Encoder>(imei);
  if (protocol == "meitrack") return std::make_unique<MeitrackEncoder>(imei);
  if (protocol == "ruptela") return std::make_unique<RuptelaEncoder>(imei);
  if (protocol == "osmand") return std::make_unique<OsmandEncoder>(imei);
  return nullptr;
}

CivilTime civilFromMicros(std::int64_t timeUs) {
  // Howard Hinnant's civil_from_days.
  std::int64_t seconds = timeUs / 1'000'000;
  std::int64_t days = seconds / 86400;
  std::int64_t rem = seconds % 86400;
  if (rem < 0) {
    rem += 86400;
    --days;
  }
  const std::int64_t z = days + 719468;
  const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const std::int64_t doe = z - era * 146097;
  const std::int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const std::int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const std::int64_t mp = (5 * doy + 2) / 153;
  const std::int64_t d = doy - (153 * mp + 2) / 5 + 1;
  const std::int64_t m = mp < 10 ? mp + 3 : mp - 9;
  CivilTime t;
  t.year = static_cast<int>(yoe + era * 400 + (m <= 2 ? 1 : 0));
  t.month = static_cast<int>(m);
  t.day = static_cast<int>(d);
  t.hour = static_cast<int>(rem / 3600);
  t.minute = static_cast<int>(rem % 3600 / 60);
  t.second = static_cast<int>(rem % 60);
  return t;
}

}  // namespace tern::tools
