#include "codec/mqtt/codec.h"

#include <array>
#include <cassert>
#include <utility>

#include "codec/mqtt/topic.h"

namespace tern::codec::mqtt {

namespace {

constexpr std::size_t kMaxRemainingLengthBytes = 4;
// Encoder preconditions, checked by assert() only (hence maybe_unused in NDEBUG builds).
[[maybe_unused]] constexpr std::size_t kMaxRemainingLength = 268'435'455;  // four 7-bit groups
[[maybe_unused]] constexpr std::size_t kMaxStringBytes = 65'535;           // 2-byte length prefix

// Fixed-header flag nibble required by §2.2.2 for every type except PUBLISH.
constexpr std::uint8_t kFlagsPubrelSubUnsub = 0x2;

// Per-type error texts, indexed by the type nibble, so each message names its packet.
struct TypeErrors {
  const char* flags = nullptr;   // reserved fixed-header flags wrong
  const char* length = nullptr;  // body length wrong (acks, empty packets)
  const char* zeroId = nullptr;  // packet identifier 0
};

constexpr std::array<TypeErrors, 16> kTypeErrors = {{
    {},
    {"CONNECT fixed header flags are not 0", nullptr, nullptr},
    {"CONNACK fixed header flags are not 0", "CONNACK body is not 2 bytes", nullptr},
    {nullptr, nullptr, "PUBLISH packet identifier is 0"},
    {"PUBACK fixed header flags are not 0", "PUBACK body is not 2 bytes",
     "PUBACK packet identifier is 0"},
    {"PUBREC fixed header flags are not 0", "PUBREC body is not 2 bytes",
     "PUBREC packet identifier is 0"},
    {"PUBREL fixed header flags are not 0010", "PUBREL body is not 2 bytes",
     "PUBREL packet identifier is 0"},
    {"PUBCOMP fixed header flags are not 0", "PUBCOMP body is not 2 bytes",
     "PUBCOMP packet identifier is 0"},
    {"SUBSCRIBE fixed header flags are not 0010", nullptr, "SUBSCRIBE packet identifier is 0"},
    {"SUBACK fixed header flags are not 0", nullptr, "SUBACK packet identifier is 0"},
    {"UNSUBSCRIBE fixed header flags are not 0010", nullptr, "UNSUBSCRIBE packet identifier is 0"},
    {"UNSUBACK fixed header flags are not 0", "UNSUBACK body is not 2 bytes",
     "UNSUBACK packet identifier is 0"},
    {"PINGREQ fixed header flags are not 0", "PINGREQ body is not empty", nullptr},
    {"PINGRESP fixed header flags are not 0", "PINGRESP body is not empty", nullptr},
    {"DISCONNECT fixed header flags are not 0", "DISCONNECT body is not empty", nullptr},
    {},
}};

// Bounds-checked cursor over a packet body; every read reports failure instead of overrunning.
class Reader {
 public:
  explicit Reader(std::string_view data) : data_(data) {}

  std::size_t remaining() const { return data_.size() - pos_; }
  bool atEnd() const { return pos_ == data_.size(); }

  bool readByte(std::uint8_t& out) {
    if (remaining() < 1) return false;
    out = static_cast<std::uint8_t>(data_[pos_++]);
    return true;
  }

  bool readU16(std::uint16_t& out) {
    if (remaining() < 2) return false;
    const auto hi = static_cast<std::uint8_t>(data_[pos_]);
    const auto lo = static_cast<std::uint8_t>(data_[pos_ + 1]);
    out = static_cast<std::uint16_t>((hi << 8) | lo);
    pos_ += 2;
    return true;
  }

  // A 2-byte-length-prefixed field (§1.5.3); the caller decides whether it must be UTF-8.
  bool readPrefixed(std::string_view& out) {
    std::uint16_t length = 0;
    if (!readU16(length) || remaining() < length) return false;
    out = data_.substr(pos_, length);
    pos_ += length;
    return true;
  }

  std::string_view rest() {
    std::string_view r = data_.substr(pos_);
    pos_ = data_.size();
    return r;
  }

 private:
  std::string_view data_;
  std::size_t pos_ = 0;
};

// Texts for the ways one UTF-8 string field can be wrong.
struct StringErrors {
  const char* truncated;
  const char* badUtf8;
};

const char* readUtf8(Reader& reader, std::string& out, StringErrors errors) {
  std::string_view raw;
  if (!reader.readPrefixed(raw)) return errors.truncated;
  if (!validUtf8(raw)) return errors.badUtf8;
  out.assign(raw);
  return nullptr;
}

const char* parseConnect(std::string_view body, Connect& c) {
  Reader r(body);
  if (const char* e = readUtf8(
          r, c.protocolName,
          {"CONNECT protocol name is truncated", "CONNECT protocol name is not valid UTF-8"})) {
    return e;
  }
  // [MQTT-3.1.2-1] lets us refuse other protocols outright instead of guessing at them.
  if (c.protocolName != "MQTT" && c.protocolName != "MQIsdp") {
    return "CONNECT protocol name is neither MQTT nor MQIsdp";
  }
  if (!r.readByte(c.protocolLevel)) return "CONNECT protocol level is missing";
  // Other levels (e.g. MQTT 5) lay out the rest differently; stop so the broker can answer
  // CONNACK 0x01 [MQTT-3.1.2-2].
  if (c.protocolLevel != 3 && c.protocolLevel != 4) return nullptr;

  std::uint8_t flags = 0;
  if (!r.readByte(flags)) return "CONNECT flags byte is missing";
  if ((flags & 0x01) != 0) return "CONNECT reserved flag bit 0 is set";
  const bool hasWill = (flags & 0x04) != 0;
  const auto willQos = static_cast<std::uint8_t>((flags >> 3) & 0x03);
  const bool willRetain = (flags & 0x20) != 0;
  const bool hasPassword = (flags & 0x40) != 0;
  const bool hasUsername = (flags & 0x80) != 0;
  c.cleanSession = (flags & 0x02) != 0;
  if (!hasWill && (willQos != 0 || willRetain)) {
    return "CONNECT will QoS or will retain set without the will flag";
  }
  if (willQos == 3) return "CONNECT will QoS is 3";
  if (hasPassword && !hasUsername) return "CONNECT password flag set without the username flag";
  if (!r.readU16(c.keepAlive)) return "CONNECT keep alive is truncated";

  if (const char* e = readUtf8(r, c.clientId,
                               {"CONNECT client identifier is truncated",
                                "CONNECT client identifier is not valid UTF-8"})) {
    return e;
  }
  if (hasWill) {
    Will& will = c.will.emplace();
    will.qos = willQos;
    will.retain = willRetain;
    std::string_view topic;
    if (!r.readPrefixed(topic)) return "CONNECT will topic is truncated";
    if (!validUtf8(topic)) return "CONNECT will topic is not valid UTF-8";
    // The will is published as-is later, so it must be a usable topic name.
    if (!validTopicName(topic)) return "CONNECT will topic is empty or contains a wildcard";
    will.topic.assign(topic);
    std::string_view payload;
    if (!r.readPrefixed(payload)) return "CONNECT will message is truncated";
    will.payload.assign(payload);
  }
  if (hasUsername) {
    if (const char* e =
            readUtf8(r, c.username.emplace(),
                     {"CONNECT user name is truncated", "CONNECT user name is not valid UTF-8"})) {
      return e;
    }
  }
  if (hasPassword) {
    std::string_view password;
    if (!r.readPrefixed(password)) return "CONNECT password is truncated";
    c.password.emplace(password);
  }
  if (!r.atEnd()) return "CONNECT has trailing bytes after its payload";
  return nullptr;
}

const char* parseConnack(std::string_view body, Connack& c) {
  if (body.size() != 2) return kTypeErrors[2].length;
  const auto ackFlags = static_cast<std::uint8_t>(body[0]);
  const auto code = static_cast<std::uint8_t>(body[1]);
  if ((ackFlags & 0xFE) != 0) return "CONNACK acknowledge flags bits 7-1 are not 0";
  if (code > static_cast<std::uint8_t>(ConnackCode::kNotAuthorized)) {
    return "CONNACK return code is reserved (above 5)";
  }
  c.sessionPresent = ackFlags != 0;
  // [MQTT-3.2.2-4]
  if (c.sessionPresent && code != 0) return "CONNACK session present set with a refusal code";
  c.returnCode = static_cast<ConnackCode>(code);
  return nullptr;
}

const char* parsePublish(std::uint8_t flags, std::string_view body, Publish& p) {
  p.retain = (flags & 0x01) != 0;
  p.qos = static_cast<std::uint8_t>((flags >> 1) & 0x03);
  p.dup = (flags & 0x08) != 0;
  if (p.qos == 3) return "PUBLISH QoS is 3";
  if (p.qos == 0 && p.dup) return "PUBLISH has DUP set with QoS 0";  // [MQTT-3.3.1-2]
  Reader r(body);
  std::string_view topic;
  if (!r.readPrefixed(topic)) return "PUBLISH topic name is truncated";
  if (topic.empty()) return "PUBLISH topic name is empty";
  if (topic.find_first_of("+#") != std::string_view::npos) {
    return "PUBLISH topic name contains a wildcard";
  }
  if (!validUtf8(topic)) return "PUBLISH topic name is not valid UTF-8";
  if (p.qos > 0) {
    if (!r.readU16(p.packetId)) return "PUBLISH packet identifier is missing";
    if (p.packetId == 0) return kTypeErrors[3].zeroId;
  }
  p.topic.assign(topic);
  p.payload.assign(r.rest());
  return nullptr;
}

const char* parseAck(PacketType type, std::string_view body, Ack& a) {
  const TypeErrors& errors = kTypeErrors[static_cast<std::size_t>(type)];
  if (body.size() != 2) return errors.length;
  Reader r(body);
  r.readU16(a.packetId);
  if (a.packetId == 0) return errors.zeroId;
  a.type = type;
  return nullptr;
}

// Topic filter checks shared by SUBSCRIBE and UNSUBSCRIBE, with texts naming the packet.
struct FilterErrors {
  const char* truncated;
  const char* empty;
  const char* badUtf8;
  const char* badWildcard;
};

const char* readFilter(Reader& r, std::string& out, const FilterErrors& errors) {
  std::string_view filter;
  if (!r.readPrefixed(filter)) return errors.truncated;
  if (filter.empty()) return errors.empty;
  if (!validUtf8(filter)) return errors.badUtf8;
  if (!validTopicFilter(filter)) return errors.badWildcard;
  out.assign(filter);
  return nullptr;
}

const char* parseSubscribe(std::string_view body, Subscribe& s) {
  static constexpr FilterErrors kErrors = {"SUBSCRIBE topic filter is truncated",
                                           "SUBSCRIBE topic filter is empty",
                                           "SUBSCRIBE topic filter is not valid UTF-8",
                                           "SUBSCRIBE topic filter has a misplaced wildcard"};
  Reader r(body);
  if (!r.readU16(s.packetId)) return "SUBSCRIBE packet identifier is missing";
  if (s.packetId == 0) return kTypeErrors[8].zeroId;
  if (r.atEnd()) return "SUBSCRIBE has no topic filter";  // [MQTT-3.8.3-3]
  while (!r.atEnd()) {
    Subscription& sub = s.subscriptions.emplace_back();
    if (const char* e = readFilter(r, sub.filter, kErrors)) return e;
    std::uint8_t options = 0;
    if (!r.readByte(options)) return "SUBSCRIBE requested QoS byte is missing";
    if ((options & 0xFC) != 0) return "SUBSCRIBE requested QoS byte has reserved bits set";
    if (options == 3) return "SUBSCRIBE requested QoS is 3";
    sub.qos = options;
  }
  return nullptr;
}

const char* parseSuback(std::string_view body, Suback& s) {
  Reader r(body);
  if (!r.readU16(s.packetId)) return "SUBACK packet identifier is missing";
  if (s.packetId == 0) return kTypeErrors[9].zeroId;
  if (r.atEnd()) return "SUBACK has no return codes";
  const std::string_view codes = r.rest();
  s.returnCodes.reserve(codes.size());
  for (const char ch : codes) {
    const auto code = static_cast<std::uint8_t>(ch);
    if (code > 2 && code != kSubackFailure) return "SUBACK return code is not 0, 1, 2 or 0x80";
    s.returnCodes.push_back(code);
  }
  return nullptr;
}

const char* parseUnsubscribe(std::string_view body, Unsubscribe& u) {
  static constexpr FilterErrors kErrors = {"UNSUBSCRIBE topic filter is truncated",
                                           "UNSUBSCRIBE topic filter is empty",
                                           "UNSUBSCRIBE topic filter is not valid UTF-8",
                                           "UNSUBSCRIBE topic filter has a misplaced wildcard"};
  Reader r(body);
  if (!r.readU16(u.packetId)) return "UNSUBSCRIBE packet identifier is missing";
  if (u.packetId == 0) return kTypeErrors[10].zeroId;
  if (r.atEnd()) return "UNSUBSCRIBE has no topic filter";  // [MQTT-3.10.3-2]
  while (!r.atEnd()) {
    if (const char* e = readFilter(r, u.filters.emplace_back(), kErrors)) return e;
  }
  return nullptr;
}

// Parses into a fresh value of type T so `out` is only touched on success.
template <class T, class Fn>
ParseResult parseInto(Packet& out, Fn&& fn) {
  T value;
  if (const char* e = std::forward<Fn>(fn)(value)) return {DecodeStatus::kMalformed, e};
  out = std::move(value);
  return {};
}

// --- encoding -----------------------------------------------------------------------------

void putU16(std::string& out, std::uint16_t v) {
  out.push_back(static_cast<char>(v >> 8));
  out.push_back(static_cast<char>(v & 0xFF));
}

// Callers must keep fields within the standard's limits; the encoders cannot fail.
void putPrefixed(std::string& out, std::string_view s) {
  assert(s.size() <= kMaxStringBytes);
  putU16(out, static_cast<std::uint16_t>(s.size()));
  out.append(s);
}

void putFixedHeader(std::string& out, std::uint8_t header, std::size_t remaining) {
  assert(remaining <= kMaxRemainingLength);
  out.reserve(out.size() + 1 + kMaxRemainingLengthBytes + remaining);
  out.push_back(static_cast<char>(header));
  do {
    auto byte = static_cast<std::uint8_t>(remaining & 0x7F);
    remaining >>= 7;
    if (remaining != 0) byte |= 0x80;
    out.push_back(static_cast<char>(byte));
  } while (remaining != 0);
}

std::uint8_t typeHeader(PacketType type, std::uint8_t flags = 0) {
  return static_cast<std::uint8_t>((static_cast<std::uint8_t>(type) << 4) | flags);
}

}  // namespace

const char* decodeStatusName(DecodeStatus status) {
  switch (status) {
    case DecodeStatus::kOk:
      return "ok";
    case DecodeStatus::kNeedMore:
      return "need more";
    case DecodeStatus::kMalformed:
      return "malformed";
    case DecodeStatus::kTooLarge:
      return "too large";
  }
  return "unknown";
}

Frame splitFrame(std::string_view data, std::uint32_t maxPacketSize) {
  Frame frame;
  if (data.empty()) return frame;
  frame.header = static_cast<std::uint8_t>(data[0]);
  const unsigned type = frame.header >> 4;
  if (type == 0 || type == 15) {
    frame.status = DecodeStatus::kMalformed;
    frame.error = "packet type is reserved (0 or 15)";
    return frame;
  }
  std::size_t remaining = 0;
  std::size_t headerSize = 0;
  for (std::size_t i = 0;; ++i) {
    if (i == kMaxRemainingLengthBytes) {
      frame.status = DecodeStatus::kMalformed;
      frame.error = "remaining length is longer than 4 bytes";
      return frame;
    }
    if (1 + i >= data.size()) return frame;  // length bytes still arriving
    const auto byte = static_cast<std::uint8_t>(data[1 + i]);
    remaining |= static_cast<std::size_t>(byte & 0x7F) << (7 * i);
    if ((byte & 0x80) == 0) {
      headerSize = 2 + i;
      break;
    }
  }
  // Decided before the body arrives so an oversized packet is never buffered.
  const std::size_t total = headerSize + remaining;
  if (total > maxPacketSize) {
    frame.status = DecodeStatus::kTooLarge;
    frame.error = "packet is larger than the maximum packet size";
    frame.size = total;
    return frame;
  }
  if (data.size() < total) return frame;
  frame.status = DecodeStatus::kOk;
  frame.body = data.substr(headerSize, remaining);
  frame.size = total;
  return frame;
}

ParseResult parsePacket(std::uint8_t header, std::string_view body, Packet& out) {
  const auto typeNibble = static_cast<std::uint8_t>(header >> 4);
  const auto flags = static_cast<std::uint8_t>(header & 0x0F);
  if (typeNibble == 0 || typeNibble == 15) {
    return {DecodeStatus::kMalformed, "packet type is reserved (0 or 15)"};
  }
  const auto type = static_cast<PacketType>(typeNibble);
  if (type != PacketType::kPublish) {
    const bool wantsTwo = type == PacketType::kPubrel || type == PacketType::kSubscribe ||
                          type == PacketType::kUnsubscribe;
    const std::uint8_t expected = wantsTwo ? kFlagsPubrelSubUnsub : 0;
    if (flags != expected) return {DecodeStatus::kMalformed, kTypeErrors[typeNibble].flags};
  }
  switch (type) {
    case PacketType::kConnect:
      return parseInto<Connect>(out, [&](Connect& c) { return parseConnect(body, c); });
    case PacketType::kConnack:
      return parseInto<Connack>(out, [&](Connack& c) { return parseConnack(body, c); });
    case PacketType::kPublish:
      return parseInto<Publish>(out, [&](Publish& p) { return parsePublish(flags, body, p); });
    case PacketType::kPuback:
    case PacketType::kPubrec:
    case PacketType::kPubrel:
    case PacketType::kPubcomp:
    case PacketType::kUnsuback:
      return parseInto<Ack>(out, [&](Ack& a) { return parseAck(type, body, a); });
    case PacketType::kSubscribe:
      return parseInto<Subscribe>(out, [&](Subscribe& s) { return parseSubscribe(body, s); });
    case PacketType::kSuback:
      return parseInto<Suback>(out, [&](Suback& s) { return parseSuback(body, s); });
    case PacketType::kUnsubscribe:
      return parseInto<Unsubscribe>(out, [&](Unsubscribe& u) { return parseUnsubscribe(body, u); });
    case PacketType::kPingreq:
    case PacketType::kPingresp:
    case PacketType::kDisconnect:
      if (!body.empty()) return {DecodeStatus::kMalformed, kTypeErrors[typeNibble].length};
      out = Empty{type};
      return {};
  }
  return {DecodeStatus::kMalformed, "packet type is reserved (0 or 15)"};  // unreachable
}

void encodeConnect(const Connect& connect, std::string& out) {
  std::size_t remaining = 2 + connect.protocolName.size() + 1 + 1 + 2 + 2 + connect.clientId.size();
  std::uint8_t flags = 0;
  if (connect.cleanSession) flags |= 0x02;
  if (connect.will) {
    remaining += 2 + connect.will->topic.size() + 2 + connect.will->payload.size();
    flags |= 0x04;
    flags = static_cast<std::uint8_t>(flags | ((connect.will->qos & 0x03) << 3));
    if (connect.will->retain) flags |= 0x20;
  }
  if (connect.password) {
    remaining += 2 + connect.password->size();
    flags |= 0x40;
  }
  if (connect.username) {
    remaining += 2 + connect.username->size();
    flags |= 0x80;
  }
  putFixedHeader(out, typeHeader(PacketType::kConnect), remaining);
  putPrefixed(out, connect.protocolName);
  out.push_back(static_cast<char>(connect.protocolLevel));
  out.push_back(static_cast<char>(flags));
  putU16(out, connect.keepAlive);
  putPrefixed(out, connect.clientId);
  if (connect.will) {
    putPrefixed(out, connect.will->topic);
    putPrefixed(out, connect.will->payload);
  }
  if (connect.username) putPrefixed(out, *connect.username);
  if (connect.password) putPrefixed(out, *connect.password);
}

void encodeConnack(bool sessionPresent, ConnackCode code, std::string& out) {
  putFixedHeader(out, typeHeader(PacketType::kConnack), 2);
  out.push_back(sessionPresent ? '\x01' : '\x00');
  out.push_back(static_cast<char>(code));
}

void encodePublish(std::string_view topic, std::string_view payload, std::uint8_t qos, bool retain,
                   bool dup, std::uint16_t packetId, std::string& out) {
  auto flags = static_cast<std::uint8_t>((qos & 0x03) << 1);
  if (dup) flags |= 0x08;
  if (retain) flags |= 0x01;
  const std::size_t remaining = 2 + topic.size() + (qos > 0 ? 2 : 0) + payload.size();
  putFixedHeader(out, typeHeader(PacketType::kPublish, flags), remaining);
  putPrefixed(out, topic);
  if (qos > 0) putU16(out, packetId);
  out.append(payload);
}

void encodeAck(PacketType type, std::uint16_t packetId, std::string& out) {
  assert(type == PacketType::kPuback || type == PacketType::kPubrec ||
         type == PacketType::kPubrel || type == PacketType::kPubcomp ||
         type == PacketType::kUnsuback);
  const std::uint8_t flags = type == PacketType::kPubrel ? kFlagsPubrelSubUnsub : 0;
  putFixedHeader(out, typeHeader(type, flags), 2);
  putU16(out, packetId);
}

void encodeSubscribe(const Subscribe& subscribe, std::string& out) {
  std::size_t remaining = 2;
  for (const Subscription& sub : subscribe.subscriptions) remaining += 2 + sub.filter.size() + 1;
  putFixedHeader(out, typeHeader(PacketType::kSubscribe, kFlagsPubrelSubUnsub), remaining);
  putU16(out, subscribe.packetId);
  for (const Subscription& sub : subscribe.subscriptions) {
    putPrefixed(out, sub.filter);
    out.push_back(static_cast<char>(sub.qos));
  }
}

void encodeSuback(std::uint16_t packetId, const std::vector<std::uint8_t>& codes,
                  std::string& out) {
  putFixedHeader(out, typeHeader(PacketType::kSuback), 2 + codes.size());
  putU16(out, packetId);
  for (const std::uint8_t code : codes) out.push_back(static_cast<char>(code));
}

void encodeUnsubscribe(const Unsubscribe& unsubscribe, std::string& out) {
  std::size_t remaining = 2;
  for (const std::string& filter : unsubscribe.filters) remaining += 2 + filter.size();
  putFixedHeader(out, typeHeader(PacketType::kUnsubscribe, kFlagsPubrelSubUnsub), remaining);
  putU16(out, unsubscribe.packetId);
  for (const std::string& filter : unsubscribe.filters) putPrefixed(out, filter);
}

void encodeEmpty(PacketType type, std::string& out) {
  assert(type == PacketType::kPingreq || type == PacketType::kPingresp ||
         type == PacketType::kDisconnect);
  putFixedHeader(out, typeHeader(type), 0);
}

namespace {

struct Encoder {
  std::string& out;
  void operator()(const Connect& c) const { encodeConnect(c, out); }
  void operator()(const Connack& c) const { encodeConnack(c.sessionPresent, c.returnCode, out); }
  void operator()(const Publish& p) const {
    encodePublish(p.topic, p.payload, p.qos, p.retain, p.dup, p.packetId, out);
  }
  void operator()(const Ack& a) const { encodeAck(a.type, a.packetId, out); }
  void operator()(const Subscribe& s) const { encodeSubscribe(s, out); }
  void operator()(const Suback& s) const { encodeSuback(s.packetId, s.returnCodes, out); }
  void operator()(const Unsubscribe& u) const { encodeUnsubscribe(u, out); }
  void operator()(const Empty& e) const { encodeEmpty(e.type, out); }
};

}  // namespace

void encode(const Packet& packet, std::string& out) {
  std::visit(Encoder{out}, packet);
}

}  // namespace tern::codec::mqtt
