#include "codec/mqtt/codec.h"

#include <array>
#include <bitset>
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
    {"AUTH fixed header flags are not 0", nullptr, nullptr},
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

  bool readU32(std::uint32_t& out) {
    if (remaining() < 4) return false;
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v = (v << 8) | static_cast<std::uint8_t>(data_[pos_ + i]);
    out = v;
    pos_ += 4;
    return true;
  }

  // A variable byte integer (§1.5.5). Non-minimal encodings are refused [MQTT-1.5.5-1].
  enum class VarintStatus { kOk, kTruncated, kBad };
  VarintStatus readVarint(std::uint32_t& out) {
    std::uint32_t value = 0;
    for (std::size_t i = 0; i < kMaxRemainingLengthBytes; ++i) {
      std::uint8_t byte = 0;
      if (!readByte(byte)) return VarintStatus::kTruncated;
      value |= static_cast<std::uint32_t>(byte & 0x7F) << (7 * i);
      if ((byte & 0x80) == 0) {
        if (i > 0 && byte == 0) return VarintStatus::kBad;  // a trailing zero group: not minimal
        out = value;
        return VarintStatus::kOk;
      }
    }
    return VarintStatus::kBad;
  }

  bool readBytes(std::size_t n, std::string_view& out) {
    if (remaining() < n) return false;
    out = data_.substr(pos_, n);
    pos_ += n;
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

// Parse state for one packet: the protocol version and, when a check fails, whether it is a
// malformed packet (0x81) or a protocol error (0x82) — an MQTT 5 DISCONNECT says which.
struct Ctx {
  ProtocolVersion version = ProtocolVersion::kV311;
  std::uint8_t reason = reason::kMalformedPacket;
  bool v5() const { return version == ProtocolVersion::kV5; }
  const char* protocolError(const char* text) {
    reason = reason::kProtocolError;
    return text;
  }
};

const char* readUtf8(Reader& reader, std::string& out, StringErrors errors) {
  std::string_view raw;
  if (!reader.readPrefixed(raw)) return errors.truncated;
  if (!validUtf8(raw)) return errors.badUtf8;
  out.assign(raw);
  return nullptr;
}

// --- MQTT 5 properties --------------------------------------------------------------------

// Which packets (or the will) a property may appear in, as bits.
enum Where : std::uint16_t {
  kInConnect = 1 << 0,
  kInConnack = 1 << 1,
  kInPublish = 1 << 2,
  kInWill = 1 << 3,
  kInPubAcks = 1 << 4,  // PUBACK, PUBREC, PUBREL, PUBCOMP
  kInSubscribe = 1 << 5,
  kInSuback = 1 << 6,
  kInUnsubscribe = 1 << 7,
  kInUnsuback = 1 << 8,
  kInDisconnect = 1 << 9,
  kInAuth = 1 << 10,
};

enum class PropType : std::uint8_t { kByte, kU16, kU32, kVarint, kUtf8, kBinary, kPair };

struct PropSpec {
  PropType type;
  std::uint16_t where;
};

// §2.2.2.2: every identifier with its type and the packets that may carry it.
const PropSpec* propSpec(std::uint32_t id) {
  static constexpr std::uint16_t kAll = 0x7FF;
  static constexpr std::uint16_t kReasonString =
      kInConnack | kInPubAcks | kInSuback | kInUnsuback | kInDisconnect | kInAuth;
  static const std::array<PropSpec, 0x2B> kSpecs = [] {
    std::array<PropSpec, 0x2B> t{};
    for (auto& e : t) e = {PropType::kByte, 0};
    t[0x01] = {PropType::kByte, kInPublish | kInWill};
    t[0x02] = {PropType::kU32, kInPublish | kInWill};
    t[0x03] = {PropType::kUtf8, kInPublish | kInWill};
    t[0x08] = {PropType::kUtf8, kInPublish | kInWill};
    t[0x09] = {PropType::kBinary, kInPublish | kInWill};
    t[0x0B] = {PropType::kVarint, kInPublish | kInSubscribe};
    t[0x11] = {PropType::kU32, kInConnect | kInConnack | kInDisconnect};
    t[0x12] = {PropType::kUtf8, kInConnack};
    t[0x13] = {PropType::kU16, kInConnack};
    t[0x15] = {PropType::kUtf8, kInConnect | kInConnack | kInAuth};
    t[0x16] = {PropType::kBinary, kInConnect | kInConnack | kInAuth};
    t[0x17] = {PropType::kByte, kInConnect};
    t[0x18] = {PropType::kU32, kInWill};
    t[0x19] = {PropType::kByte, kInConnect};
    t[0x1A] = {PropType::kUtf8, kInConnack};
    t[0x1C] = {PropType::kUtf8, kInConnack | kInDisconnect};
    t[0x1F] = {PropType::kUtf8, kReasonString};
    t[0x21] = {PropType::kU16, kInConnect | kInConnack};
    t[0x22] = {PropType::kU16, kInConnect | kInConnack};
    t[0x23] = {PropType::kU16, kInPublish};
    t[0x24] = {PropType::kByte, kInConnack};
    t[0x25] = {PropType::kByte, kInConnack};
    t[0x26] = {PropType::kPair, kAll};
    t[0x27] = {PropType::kU32, kInConnect | kInConnack};
    t[0x28] = {PropType::kByte, kInConnack};
    t[0x29] = {PropType::kByte, kInConnack};
    t[0x2A] = {PropType::kByte, kInConnack};
    return t;
  }();
  if (id >= kSpecs.size() || kSpecs[id].where == 0) return nullptr;
  return &kSpecs[id];
}

struct PropValue {
  std::uint32_t number = 0;
  std::string_view text;   // kUtf8, kBinary; the name of a kPair
  std::string_view value;  // the value of a kPair
};

// A 0/1 flag property: any other value is a protocol error.
const char* flag(Ctx& ctx, std::optional<std::uint8_t>& out, std::uint32_t v, const char* error) {
  if (v > 1) return ctx.protocolError(error);
  out = static_cast<std::uint8_t>(v);
  return nullptr;
}

const char* storeProperty(Ctx& ctx, PropertyId id, const PropValue& v, Properties& p) {
  auto u16 = [&] { return static_cast<std::uint16_t>(v.number); };
  switch (id) {
    case PropertyId::kPayloadFormatIndicator:
      return flag(ctx, p.payloadFormatIndicator, v.number,
                  "payload format indicator is not 0 or 1");
    case PropertyId::kMessageExpiryInterval:
      p.messageExpiryInterval = v.number;
      return nullptr;
    case PropertyId::kContentType:
      p.contentType.emplace(v.text);
      return nullptr;
    case PropertyId::kResponseTopic:
      // [MQTT-3.3.2-14]: a topic name, no wildcards.
      if (!validTopicName(v.text)) {
        return ctx.protocolError("response topic is empty or contains a wildcard");
      }
      p.responseTopic.emplace(v.text);
      return nullptr;
    case PropertyId::kCorrelationData:
      p.correlationData.emplace(v.text);
      return nullptr;
    case PropertyId::kSubscriptionIdentifier:
      if (v.number == 0) return ctx.protocolError("subscription identifier is 0");
      p.subscriptionIdentifiers.push_back(v.number);
      return nullptr;
    case PropertyId::kSessionExpiryInterval:
      p.sessionExpiryInterval = v.number;
      return nullptr;
    case PropertyId::kAssignedClientIdentifier:
      p.assignedClientIdentifier.emplace(v.text);
      return nullptr;
    case PropertyId::kServerKeepAlive:
      p.serverKeepAlive = u16();
      return nullptr;
    case PropertyId::kAuthenticationMethod:
      p.authenticationMethod.emplace(v.text);
      return nullptr;
    case PropertyId::kAuthenticationData:
      p.authenticationData.emplace(v.text);
      return nullptr;
    case PropertyId::kRequestProblemInformation:
      return flag(ctx, p.requestProblemInformation, v.number,
                  "request problem information is not 0 or 1");
    case PropertyId::kWillDelayInterval:
      p.willDelayInterval = v.number;
      return nullptr;
    case PropertyId::kRequestResponseInformation:
      return flag(ctx, p.requestResponseInformation, v.number,
                  "request response information is not 0 or 1");
    case PropertyId::kResponseInformation:
      p.responseInformation.emplace(v.text);
      return nullptr;
    case PropertyId::kServerReference:
      p.serverReference.emplace(v.text);
      return nullptr;
    case PropertyId::kReasonString:
      p.reasonString.emplace(v.text);
      return nullptr;
    case PropertyId::kReceiveMaximum:
      if (v.number == 0) return ctx.protocolError("receive maximum is 0");
      p.receiveMaximum = u16();
      return nullptr;
    case PropertyId::kTopicAliasMaximum:
      p.topicAliasMaximum = u16();
      return nullptr;
    case PropertyId::kTopicAlias:
      if (v.number == 0) return ctx.protocolError("topic alias is 0");
      p.topicAlias = u16();
      return nullptr;
    case PropertyId::kMaximumQos:
      return flag(ctx, p.maximumQos, v.number, "maximum QoS is not 0 or 1");
    case PropertyId::kRetainAvailable:
      return flag(ctx, p.retainAvailable, v.number, "retain available is not 0 or 1");
    case PropertyId::kUserProperty:
      p.userProperties.push_back({std::string(v.text), std::string(v.value)});
      return nullptr;
    case PropertyId::kMaximumPacketSize:
      if (v.number == 0) return ctx.protocolError("maximum packet size is 0");
      p.maximumPacketSize = v.number;
      return nullptr;
    case PropertyId::kWildcardSubscriptionAvailable:
      return flag(ctx, p.wildcardSubscriptionAvailable, v.number,
                  "wildcard subscription available is not 0 or 1");
    case PropertyId::kSubscriptionIdentifierAvailable:
      return flag(ctx, p.subscriptionIdentifierAvailable, v.number,
                  "subscription identifier available is not 0 or 1");
    case PropertyId::kSharedSubscriptionAvailable:
      return flag(ctx, p.sharedSubscriptionAvailable, v.number,
                  "shared subscription available is not 0 or 1");
  }
  return "property identifier is unknown";  // unreachable: propSpec filtered the ids
}

// Reads a property length and the properties after it (§2.2.2). `where` says which packet
// they belong to: an identifier it does not allow, or a value of the wrong type, is a malformed
// packet; a repeated property (other than user properties, and subscription identifiers in
// PUBLISH) is a protocol error.
const char* readProperties(Ctx& ctx, Reader& r, Where where, Properties& p) {
  std::uint32_t length = 0;
  switch (r.readVarint(length)) {
    case Reader::VarintStatus::kOk:
      break;
    case Reader::VarintStatus::kTruncated:
      return "property length is missing";
    case Reader::VarintStatus::kBad:
      return "property length is not a valid variable byte integer";
  }
  std::string_view block;
  if (!r.readBytes(length, block)) return "properties are longer than the packet";
  Reader pr(block);
  std::bitset<0x2B> seen;
  while (!pr.atEnd()) {
    std::uint32_t id = 0;
    if (pr.readVarint(id) != Reader::VarintStatus::kOk) return "property identifier is malformed";
    const PropSpec* spec = propSpec(id);
    if (spec == nullptr) return "property identifier is unknown";
    if ((spec->where & where) == 0) return "property is not allowed in this packet";
    const auto pid = static_cast<PropertyId>(id);
    const bool repeatable = pid == PropertyId::kUserProperty ||
                            (pid == PropertyId::kSubscriptionIdentifier && where == kInPublish);
    if (seen.test(id) && !repeatable) return ctx.protocolError("property appears more than once");
    seen.set(id);
    PropValue v;
    switch (spec->type) {
      case PropType::kByte: {
        std::uint8_t b = 0;
        if (!pr.readByte(b)) return "property value is truncated";
        v.number = b;
        break;
      }
      case PropType::kU16: {
        std::uint16_t n = 0;
        if (!pr.readU16(n)) return "property value is truncated";
        v.number = n;
        break;
      }
      case PropType::kU32:
        if (!pr.readU32(v.number)) return "property value is truncated";
        break;
      case PropType::kVarint:
        if (pr.readVarint(v.number) != Reader::VarintStatus::kOk) {
          return "property value is not a valid variable byte integer";
        }
        break;
      case PropType::kUtf8:
        if (!pr.readPrefixed(v.text)) return "property value is truncated";
        if (!validUtf8(v.text)) return "property string is not valid UTF-8";
        break;
      case PropType::kBinary:
        if (!pr.readPrefixed(v.text)) return "property value is truncated";
        break;
      case PropType::kPair:
        if (!pr.readPrefixed(v.text) || !pr.readPrefixed(v.value)) {
          return "user property is truncated";
        }
        if (!validUtf8(v.text) || !validUtf8(v.value)) return "user property is not valid UTF-8";
        break;
    }
    if (const char* e = storeProperty(ctx, pid, v, p)) return e;
  }
  if (p.authenticationData && !p.authenticationMethod) {
    return ctx.protocolError("authentication data without an authentication method");
  }
  return nullptr;
}

bool validReason(std::uint8_t code, std::initializer_list<std::uint8_t> allowed) {
  for (const std::uint8_t a : allowed) {
    if (a == code) return true;
  }
  return false;
}

// --- parsing --------------------------------------------------------------------------------

const char* parseConnect(Ctx& ctx, std::string_view body, Connect& c) {
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
  // Other levels lay out the rest differently; stop so the broker can answer CONNACK 0x01
  // (3.1.1) / 0x84 (5) [MQTT-3.1.2-2].
  if (c.protocolLevel != 3 && c.protocolLevel != 4 && c.protocolLevel != 5) return nullptr;
  const bool v5 = c.protocolLevel == 5;
  ctx.version = v5 ? ProtocolVersion::kV5 : ProtocolVersion::kV311;

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
  // MQTT 5 allows a password without a user name (§3.1.2.9).
  if (!v5 && hasPassword && !hasUsername) {
    return "CONNECT password flag set without the username flag";
  }
  if (!r.readU16(c.keepAlive)) return "CONNECT keep alive is truncated";
  if (v5) {
    if (const char* e = readProperties(ctx, r, kInConnect, c.properties)) return e;
  }

  if (const char* e = readUtf8(r, c.clientId,
                               {"CONNECT client identifier is truncated",
                                "CONNECT client identifier is not valid UTF-8"})) {
    return e;
  }
  if (hasWill) {
    Will& will = c.will.emplace();
    will.qos = willQos;
    will.retain = willRetain;
    if (v5) {
      if (const char* e = readProperties(ctx, r, kInWill, will.properties)) return e;
    }
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

const char* parseConnack(Ctx& ctx, std::string_view body, Connack& c) {
  if (!ctx.v5() && body.size() != 2) return kTypeErrors[2].length;
  Reader r(body);
  std::uint8_t ackFlags = 0;
  std::uint8_t code = 0;
  if (!r.readByte(ackFlags) || !r.readByte(code)) return "CONNACK is truncated";
  if ((ackFlags & 0xFE) != 0) return "CONNACK acknowledge flags bits 7-1 are not 0";
  if (ctx.v5()) {
    if (!validReason(code, {0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89,
                            0x8A, 0x8C, 0x90, 0x95, 0x97, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F})) {
      return ctx.protocolError("CONNACK reason code is not one MQTT 5 allows");
    }
    if (const char* e = readProperties(ctx, r, kInConnack, c.properties)) return e;
    if (!r.atEnd()) return "CONNACK has trailing bytes after its properties";
  } else if (code > static_cast<std::uint8_t>(ConnackCode::kNotAuthorized)) {
    return "CONNACK return code is reserved (above 5)";
  }
  c.sessionPresent = ackFlags != 0;
  // [MQTT-3.2.2-4] / [MQTT-3.2.2-6]
  if (c.sessionPresent && code != 0) return "CONNACK session present set with a refusal code";
  c.returnCode = static_cast<ConnackCode>(code);
  return nullptr;
}

const char* parsePublish(Ctx& ctx, std::uint8_t flags, std::string_view body, Publish& p) {
  p.retain = (flags & 0x01) != 0;
  p.qos = static_cast<std::uint8_t>((flags >> 1) & 0x03);
  p.dup = (flags & 0x08) != 0;
  if (p.qos == 3) return "PUBLISH QoS is 3";
  if (p.qos == 0 && p.dup) return "PUBLISH has DUP set with QoS 0";  // [MQTT-3.3.1-2]
  Reader r(body);
  std::string_view topic;
  if (!r.readPrefixed(topic)) return "PUBLISH topic name is truncated";
  if (topic.find_first_of("+#") != std::string_view::npos) {
    return "PUBLISH topic name contains a wildcard";
  }
  if (!validUtf8(topic)) return "PUBLISH topic name is not valid UTF-8";
  if (p.qos > 0) {
    if (!r.readU16(p.packetId)) return "PUBLISH packet identifier is missing";
    if (p.packetId == 0) return kTypeErrors[3].zeroId;
  }
  if (ctx.v5()) {
    if (const char* e = readProperties(ctx, r, kInPublish, p.properties)) return e;
  }
  // MQTT 5: an empty topic name stands for the one a topic alias maps to [MQTT-3.3.2-8].
  if (topic.empty() && !p.properties.topicAlias) {
    return ctx.v5() ? ctx.protocolError("PUBLISH topic name is empty without a topic alias")
                    : "PUBLISH topic name is empty";
  }
  p.topic.assign(topic);
  p.payload.assign(r.rest());
  return nullptr;
}

const char* parseAck(Ctx& ctx, PacketType type, std::string_view body, Ack& a) {
  const TypeErrors& errors = kTypeErrors[static_cast<std::size_t>(type)];
  if (!ctx.v5() && body.size() != 2) return errors.length;
  Reader r(body);
  if (!r.readU16(a.packetId)) return errors.length;
  if (a.packetId == 0) return errors.zeroId;
  a.type = type;
  if (!ctx.v5() || r.atEnd()) return nullptr;  // MQTT 5: no reason code means success
  r.readByte(a.reasonCode);
  const bool pubackOrPubrec = type == PacketType::kPuback || type == PacketType::kPubrec;
  const bool valid =
      pubackOrPubrec
          ? validReason(a.reasonCode, {0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99})
          : validReason(a.reasonCode, {0x00, 0x92});
  if (!valid) return ctx.protocolError("acknowledgement reason code is not one MQTT 5 allows");
  if (r.atEnd()) return nullptr;
  if (const char* e = readProperties(ctx, r, kInPubAcks, a.properties)) return e;
  if (!r.atEnd()) return "acknowledgement has trailing bytes after its properties";
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

const char* parseSubscribe(Ctx& ctx, std::string_view body, Subscribe& s) {
  static constexpr FilterErrors kErrors = {"SUBSCRIBE topic filter is truncated",
                                           "SUBSCRIBE topic filter is empty",
                                           "SUBSCRIBE topic filter is not valid UTF-8",
                                           "SUBSCRIBE topic filter has a misplaced wildcard"};
  Reader r(body);
  if (!r.readU16(s.packetId)) return "SUBSCRIBE packet identifier is missing";
  if (s.packetId == 0) return kTypeErrors[8].zeroId;
  if (ctx.v5()) {
    if (const char* e = readProperties(ctx, r, kInSubscribe, s.properties)) return e;
  }
  if (r.atEnd()) return ctx.protocolError("SUBSCRIBE has no topic filter");  // [MQTT-3.8.3-3]
  while (!r.atEnd()) {
    Subscription& sub = s.subscriptions.emplace_back();
    if (const char* e = readFilter(r, sub.filter, kErrors)) return e;
    std::uint8_t options = 0;
    if (!r.readByte(options)) return "SUBSCRIBE requested QoS byte is missing";
    if (ctx.v5()) {
      if ((options & 0xC0) != 0) return "SUBSCRIBE options byte has reserved bits set";
      sub.noLocal = (options & 0x04) != 0;
      sub.retainAsPublished = (options & 0x08) != 0;
      sub.retainHandling = static_cast<std::uint8_t>((options >> 4) & 0x03);
      if (sub.retainHandling == 3) return ctx.protocolError("SUBSCRIBE retain handling is 3");
      // [MQTT-3.8.3-4]: no local on a shared subscription is a protocol error.
      if (sub.noLocal && sub.filter.starts_with("$share/")) {
        return ctx.protocolError("SUBSCRIBE sets no local on a shared subscription");
      }
    } else if ((options & 0xFC) != 0) {
      return "SUBSCRIBE requested QoS byte has reserved bits set";
    }
    sub.qos = static_cast<std::uint8_t>(options & 0x03);
    if (sub.qos == 3) return "SUBSCRIBE requested QoS is 3";
  }
  return nullptr;
}

const char* parseSuback(Ctx& ctx, std::string_view body, Suback& s) {
  Reader r(body);
  if (!r.readU16(s.packetId)) return "SUBACK packet identifier is missing";
  if (s.packetId == 0) return kTypeErrors[9].zeroId;
  if (ctx.v5()) {
    if (const char* e = readProperties(ctx, r, kInSuback, s.properties)) return e;
  }
  if (r.atEnd()) return "SUBACK has no return codes";
  const std::string_view codes = r.rest();
  s.returnCodes.reserve(codes.size());
  for (const char ch : codes) {
    const auto code = static_cast<std::uint8_t>(ch);
    if (ctx.v5()) {
      if (!validReason(code,
                       {0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2})) {
        return ctx.protocolError("SUBACK reason code is not one MQTT 5 allows");
      }
    } else if (code > 2 && code != kSubackFailure) {
      return "SUBACK return code is not 0, 1, 2 or 0x80";
    }
    s.returnCodes.push_back(code);
  }
  return nullptr;
}

const char* parseUnsubscribe(Ctx& ctx, std::string_view body, Unsubscribe& u) {
  static constexpr FilterErrors kErrors = {"UNSUBSCRIBE topic filter is truncated",
                                           "UNSUBSCRIBE topic filter is empty",
                                           "UNSUBSCRIBE topic filter is not valid UTF-8",
                                           "UNSUBSCRIBE topic filter has a misplaced wildcard"};
  Reader r(body);
  if (!r.readU16(u.packetId)) return "UNSUBSCRIBE packet identifier is missing";
  if (u.packetId == 0) return kTypeErrors[10].zeroId;
  if (ctx.v5()) {
    if (const char* e = readProperties(ctx, r, kInUnsubscribe, u.properties)) return e;
  }
  // [MQTT-3.10.3-2]
  if (r.atEnd()) return ctx.protocolError("UNSUBSCRIBE has no topic filter");
  while (!r.atEnd()) {
    if (const char* e = readFilter(r, u.filters.emplace_back(), kErrors)) return e;
  }
  return nullptr;
}

const char* parseUnsuback(Ctx& ctx, std::string_view body, Unsuback& u) {
  if (!ctx.v5() && body.size() != 2) return kTypeErrors[11].length;
  Reader r(body);
  if (!r.readU16(u.packetId)) return "UNSUBACK packet identifier is missing";
  if (u.packetId == 0) return kTypeErrors[11].zeroId;
  if (!ctx.v5()) return nullptr;
  if (const char* e = readProperties(ctx, r, kInUnsuback, u.properties)) return e;
  if (r.atEnd()) return "UNSUBACK has no reason codes";
  for (const char ch : r.rest()) {
    const auto code = static_cast<std::uint8_t>(ch);
    if (!validReason(code, {0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91})) {
      return ctx.protocolError("UNSUBACK reason code is not one MQTT 5 allows");
    }
    u.reasonCodes.push_back(code);
  }
  return nullptr;
}

// DISCONNECT and AUTH in MQTT 5: an optional reason code, then optional properties (§3.14.2).
const char* parseReasonAndProperties(Ctx& ctx, std::string_view body, Where where,
                                     std::uint8_t& code, Properties& properties) {
  Reader r(body);
  if (r.atEnd()) return nullptr;
  r.readByte(code);
  const bool valid =
      where == kInAuth
          ? validReason(code, {0x00, 0x18, 0x19})
          : validReason(code, {0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D,
                               0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99,
                               0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2});
  if (!valid) {
    return ctx.protocolError(where == kInAuth ? "AUTH reason code is not one MQTT 5 allows"
                                              : "DISCONNECT reason code is not one MQTT 5 allows");
  }
  if (r.atEnd()) return nullptr;
  if (const char* e = readProperties(ctx, r, where, properties)) return e;
  if (!r.atEnd()) return "trailing bytes after the properties";
  return nullptr;
}

// Parses into a fresh value of type T so `out` is only touched on success.
template <class T, class Fn>
ParseResult parseInto(Ctx& ctx, Packet& out, Fn&& fn) {
  T value;
  if (const char* e = std::forward<Fn>(fn)(value)) return {DecodeStatus::kMalformed, e, ctx.reason};
  out = std::move(value);
  return {};
}

// --- encoding -----------------------------------------------------------------------------

void putU16(std::string& out, std::uint16_t v) {
  out.push_back(static_cast<char>(v >> 8));
  out.push_back(static_cast<char>(v & 0xFF));
}

void putU32(std::string& out, std::uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8)
    out.push_back(static_cast<char>((v >> shift) & 0xFF));
}

void putVarint(std::string& out, std::size_t v) {
  assert(v <= kMaxRemainingLength);
  do {
    auto byte = static_cast<std::uint8_t>(v & 0x7F);
    v >>= 7;
    if (v != 0) byte |= 0x80;
    out.push_back(static_cast<char>(byte));
  } while (v != 0);
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
  putVarint(out, remaining);
}

std::uint8_t typeHeader(PacketType type, std::uint8_t flags = 0) {
  return static_cast<std::uint8_t>((static_cast<std::uint8_t>(type) << 4) | flags);
}

void putId(std::string& out, PropertyId id) {
  out.push_back(static_cast<char>(id));
}

// The property block without its length, in identifier order. With `overrides`, the message
// expiry, topic alias and subscription identifiers come from there instead of `p`.
void putPropertyBody(std::string& out, const Properties& p, const PublishOverrides* overrides) {
  auto byteProp = [&](PropertyId id, const std::optional<std::uint8_t>& v) {
    if (!v) return;
    putId(out, id);
    out.push_back(static_cast<char>(*v));
  };
  auto u16Prop = [&](PropertyId id, const std::optional<std::uint16_t>& v) {
    if (!v) return;
    putId(out, id);
    putU16(out, *v);
  };
  auto u32Prop = [&](PropertyId id, const std::optional<std::uint32_t>& v) {
    if (!v) return;
    putId(out, id);
    putU32(out, *v);
  };
  auto strProp = [&](PropertyId id, const std::optional<std::string>& v) {
    if (!v) return;
    putId(out, id);
    putPrefixed(out, *v);
  };
  std::optional<std::uint32_t> expiry = p.messageExpiryInterval;
  std::optional<std::uint16_t> alias = p.topicAlias;
  const std::vector<std::uint32_t>* subIds = &p.subscriptionIdentifiers;
  static const std::vector<std::uint32_t> kNone;
  if (overrides != nullptr) {
    expiry = overrides->messageExpiryInterval;
    alias = overrides->topicAlias;
    subIds =
        overrides->subscriptionIdentifiers != nullptr ? overrides->subscriptionIdentifiers : &kNone;
  }
  byteProp(PropertyId::kPayloadFormatIndicator, p.payloadFormatIndicator);
  u32Prop(PropertyId::kMessageExpiryInterval, expiry);
  strProp(PropertyId::kContentType, p.contentType);
  strProp(PropertyId::kResponseTopic, p.responseTopic);
  strProp(PropertyId::kCorrelationData, p.correlationData);
  for (const std::uint32_t id : *subIds) {
    putId(out, PropertyId::kSubscriptionIdentifier);
    putVarint(out, id);
  }
  u32Prop(PropertyId::kSessionExpiryInterval, p.sessionExpiryInterval);
  strProp(PropertyId::kAssignedClientIdentifier, p.assignedClientIdentifier);
  u16Prop(PropertyId::kServerKeepAlive, p.serverKeepAlive);
  strProp(PropertyId::kAuthenticationMethod, p.authenticationMethod);
  strProp(PropertyId::kAuthenticationData, p.authenticationData);
  byteProp(PropertyId::kRequestProblemInformation, p.requestProblemInformation);
  u32Prop(PropertyId::kWillDelayInterval, p.willDelayInterval);
  byteProp(PropertyId::kRequestResponseInformation, p.requestResponseInformation);
  strProp(PropertyId::kResponseInformation, p.responseInformation);
  strProp(PropertyId::kServerReference, p.serverReference);
  strProp(PropertyId::kReasonString, p.reasonString);
  u16Prop(PropertyId::kReceiveMaximum, p.receiveMaximum);
  u16Prop(PropertyId::kTopicAliasMaximum, p.topicAliasMaximum);
  u16Prop(PropertyId::kTopicAlias, alias);
  byteProp(PropertyId::kMaximumQos, p.maximumQos);
  byteProp(PropertyId::kRetainAvailable, p.retainAvailable);
  for (const UserProperty& up : p.userProperties) {
    putId(out, PropertyId::kUserProperty);
    putPrefixed(out, up.name);
    putPrefixed(out, up.value);
  }
  u32Prop(PropertyId::kMaximumPacketSize, p.maximumPacketSize);
  byteProp(PropertyId::kWildcardSubscriptionAvailable, p.wildcardSubscriptionAvailable);
  byteProp(PropertyId::kSubscriptionIdentifierAvailable, p.subscriptionIdentifierAvailable);
  byteProp(PropertyId::kSharedSubscriptionAvailable, p.sharedSubscriptionAvailable);
}

// Property length + properties.
void putProperties(std::string& out, const Properties& p,
                   const PublishOverrides* overrides = nullptr) {
  std::string body;
  putPropertyBody(body, p, overrides);
  putVarint(out, body.size());
  out.append(body);
}

// Writes a packet whose body was built separately (MQTT 5 packets, where the property length
// must be known before the fixed header).
void putPacket(std::string& out, std::uint8_t header, std::string_view body) {
  putFixedHeader(out, header, body.size());
  out.append(body);
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
  // Type 15 is AUTH in MQTT 5; parsePacket refuses it on a 3.1.1 connection.
  if (type == 0) {
    frame.status = DecodeStatus::kMalformed;
    frame.error = "packet type is reserved (0)";
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
    frame.reasonCode = reason::kPacketTooLarge;
    frame.size = total;
    return frame;
  }
  if (data.size() < total) return frame;
  frame.status = DecodeStatus::kOk;
  frame.body = data.substr(headerSize, remaining);
  frame.size = total;
  return frame;
}

ParseResult parsePacket(std::uint8_t header, std::string_view body, Packet& out,
                        ProtocolVersion version) {
  Ctx ctx{version};
  const auto typeNibble = static_cast<std::uint8_t>(header >> 4);
  const auto flags = static_cast<std::uint8_t>(header & 0x0F);
  if (typeNibble == 0) return {DecodeStatus::kMalformed, "packet type is reserved (0)"};
  if (typeNibble == 15 && !ctx.v5()) {
    return {DecodeStatus::kMalformed, "packet type 15 (AUTH) is reserved in MQTT 3.1.1"};
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
      return parseInto<Connect>(ctx, out, [&](Connect& c) { return parseConnect(ctx, body, c); });
    case PacketType::kConnack:
      return parseInto<Connack>(ctx, out, [&](Connack& c) { return parseConnack(ctx, body, c); });
    case PacketType::kPublish:
      return parseInto<Publish>(ctx, out,
                                [&](Publish& p) { return parsePublish(ctx, flags, body, p); });
    case PacketType::kPuback:
    case PacketType::kPubrec:
    case PacketType::kPubrel:
    case PacketType::kPubcomp:
      return parseInto<Ack>(ctx, out, [&](Ack& a) { return parseAck(ctx, type, body, a); });
    case PacketType::kUnsuback:
      return parseInto<Unsuback>(ctx, out,
                                 [&](Unsuback& u) { return parseUnsuback(ctx, body, u); });
    case PacketType::kSubscribe:
      return parseInto<Subscribe>(ctx, out,
                                  [&](Subscribe& s) { return parseSubscribe(ctx, body, s); });
    case PacketType::kSuback:
      return parseInto<Suback>(ctx, out, [&](Suback& s) { return parseSuback(ctx, body, s); });
    case PacketType::kUnsubscribe:
      return parseInto<Unsubscribe>(ctx, out,
                                    [&](Unsubscribe& u) { return parseUnsubscribe(ctx, body, u); });
    case PacketType::kPingreq:
    case PacketType::kPingresp:
      if (!body.empty()) return {DecodeStatus::kMalformed, kTypeErrors[typeNibble].length};
      out = Empty{type};
      return {};
    case PacketType::kDisconnect:
      if (!ctx.v5() && !body.empty()) {
        return {DecodeStatus::kMalformed, kTypeErrors[typeNibble].length};
      }
      return parseInto<Disconnect>(ctx, out, [&](Disconnect& d) {
        return parseReasonAndProperties(ctx, body, kInDisconnect, d.reasonCode, d.properties);
      });
    case PacketType::kAuth:
      return parseInto<Auth>(ctx, out, [&](Auth& a) {
        return parseReasonAndProperties(ctx, body, kInAuth, a.reasonCode, a.properties);
      });
  }
  return {DecodeStatus::kMalformed, "packet type is reserved (0)"};  // unreachable
}

void encodeConnect(const Connect& connect, std::string& out) {
  const bool v5 = connect.protocolLevel == 5;
  std::uint8_t flags = 0;
  if (connect.cleanSession) flags |= 0x02;
  if (connect.will) {
    flags |= 0x04;
    flags = static_cast<std::uint8_t>(flags | ((connect.will->qos & 0x03) << 3));
    if (connect.will->retain) flags |= 0x20;
  }
  if (connect.password) flags |= 0x40;
  if (connect.username) flags |= 0x80;
  std::string body;
  putPrefixed(body, connect.protocolName);
  body.push_back(static_cast<char>(connect.protocolLevel));
  body.push_back(static_cast<char>(flags));
  putU16(body, connect.keepAlive);
  if (v5) putProperties(body, connect.properties);
  putPrefixed(body, connect.clientId);
  if (connect.will) {
    if (v5) putProperties(body, connect.will->properties);
    putPrefixed(body, connect.will->topic);
    putPrefixed(body, connect.will->payload);
  }
  if (connect.username) putPrefixed(body, *connect.username);
  if (connect.password) putPrefixed(body, *connect.password);
  putPacket(out, typeHeader(PacketType::kConnect), body);
}

void encodeConnack(bool sessionPresent, ConnackCode code, std::string& out) {
  putFixedHeader(out, typeHeader(PacketType::kConnack), 2);
  out.push_back(sessionPresent ? '\x01' : '\x00');
  out.push_back(static_cast<char>(code));
}

void encodeConnack5(const Connack& connack, std::string& out) {
  std::string body;
  body.push_back(connack.sessionPresent ? '\x01' : '\x00');
  body.push_back(static_cast<char>(connack.returnCode));
  putProperties(body, connack.properties);
  putPacket(out, typeHeader(PacketType::kConnack), body);
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

void encodePublish5(std::string_view topic, std::string_view payload, std::uint8_t qos, bool retain,
                    bool dup, std::uint16_t packetId, const Properties* properties,
                    const PublishOverrides* overrides, std::string& out) {
  auto flags = static_cast<std::uint8_t>((qos & 0x03) << 1);
  if (dup) flags |= 0x08;
  if (retain) flags |= 0x01;
  static const Properties kEmpty;
  std::string props;
  putPropertyBody(props, properties != nullptr ? *properties : kEmpty, overrides);
  std::string length;
  putVarint(length, props.size());
  const std::size_t remaining =
      2 + topic.size() + (qos > 0 ? 2 : 0) + length.size() + props.size() + payload.size();
  putFixedHeader(out, typeHeader(PacketType::kPublish, flags), remaining);
  putPrefixed(out, topic);
  if (qos > 0) putU16(out, packetId);
  out.append(length);
  out.append(props);
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

void encodeAck5(PacketType type, std::uint16_t packetId, std::uint8_t reasonCode,
                const Properties* properties, std::string& out) {
  assert(type == PacketType::kPuback || type == PacketType::kPubrec ||
         type == PacketType::kPubrel || type == PacketType::kPubcomp);
  const std::uint8_t flags = type == PacketType::kPubrel ? kFlagsPubrelSubUnsub : 0;
  const bool hasProperties = properties != nullptr && !properties->empty();
  // The shortest form the standard allows (§3.4.2.1): no reason code for success, no property
  // length when there are none.
  if (!hasProperties) {
    const bool success = reasonCode == reason::kSuccess;
    putFixedHeader(out, typeHeader(type, flags), success ? 2 : 3);
    putU16(out, packetId);
    if (!success) out.push_back(static_cast<char>(reasonCode));
    return;
  }
  std::string body;
  putU16(body, packetId);
  body.push_back(static_cast<char>(reasonCode));
  putProperties(body, *properties);
  putPacket(out, typeHeader(type, flags), body);
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

void encodeSubscribe5(const Subscribe& subscribe, std::string& out) {
  std::string body;
  putU16(body, subscribe.packetId);
  putProperties(body, subscribe.properties);
  for (const Subscription& sub : subscribe.subscriptions) {
    putPrefixed(body, sub.filter);
    auto options = static_cast<std::uint8_t>(sub.qos & 0x03);
    if (sub.noLocal) options |= 0x04;
    if (sub.retainAsPublished) options |= 0x08;
    options = static_cast<std::uint8_t>(options | ((sub.retainHandling & 0x03) << 4));
    body.push_back(static_cast<char>(options));
  }
  putPacket(out, typeHeader(PacketType::kSubscribe, kFlagsPubrelSubUnsub), body);
}

void encodeSuback(std::uint16_t packetId, const std::vector<std::uint8_t>& codes,
                  std::string& out) {
  putFixedHeader(out, typeHeader(PacketType::kSuback), 2 + codes.size());
  putU16(out, packetId);
  for (const std::uint8_t code : codes) out.push_back(static_cast<char>(code));
}

void encodeSuback5(const Suback& suback, std::string& out) {
  std::string body;
  putU16(body, suback.packetId);
  putProperties(body, suback.properties);
  for (const std::uint8_t code : suback.returnCodes) body.push_back(static_cast<char>(code));
  putPacket(out, typeHeader(PacketType::kSuback), body);
}

void encodeUnsubscribe(const Unsubscribe& unsubscribe, std::string& out) {
  std::size_t remaining = 2;
  for (const std::string& filter : unsubscribe.filters) remaining += 2 + filter.size();
  putFixedHeader(out, typeHeader(PacketType::kUnsubscribe, kFlagsPubrelSubUnsub), remaining);
  putU16(out, unsubscribe.packetId);
  for (const std::string& filter : unsubscribe.filters) putPrefixed(out, filter);
}

void encodeUnsubscribe5(const Unsubscribe& unsubscribe, std::string& out) {
  std::string body;
  putU16(body, unsubscribe.packetId);
  putProperties(body, unsubscribe.properties);
  for (const std::string& filter : unsubscribe.filters) putPrefixed(body, filter);
  putPacket(out, typeHeader(PacketType::kUnsubscribe, kFlagsPubrelSubUnsub), body);
}

void encodeUnsuback5(const Unsuback& unsuback, std::string& out) {
  std::string body;
  putU16(body, unsuback.packetId);
  putProperties(body, unsuback.properties);
  for (const std::uint8_t code : unsuback.reasonCodes) body.push_back(static_cast<char>(code));
  putPacket(out, typeHeader(PacketType::kUnsuback), body);
}

void encodeEmpty(PacketType type, std::string& out) {
  assert(type == PacketType::kPingreq || type == PacketType::kPingresp ||
         type == PacketType::kDisconnect);
  putFixedHeader(out, typeHeader(type), 0);
}

namespace {

// DISCONNECT and AUTH in MQTT 5, in their shortest form (§3.14.2.1).
void encodeReasonAndProperties(PacketType type, std::uint8_t code, const Properties& properties,
                               std::string& out) {
  std::string body;
  if (code != reason::kSuccess || !properties.empty()) body.push_back(static_cast<char>(code));
  if (!properties.empty()) putProperties(body, properties);
  putPacket(out, typeHeader(type), body);
}

}  // namespace

void encodeDisconnect5(std::uint8_t reasonCode, const Properties* properties, std::string& out) {
  static const Properties kEmpty;
  encodeReasonAndProperties(PacketType::kDisconnect, reasonCode,
                            properties != nullptr ? *properties : kEmpty, out);
}

void encodeAuth(const Auth& auth, std::string& out) {
  encodeReasonAndProperties(PacketType::kAuth, auth.reasonCode, auth.properties, out);
}

namespace {

struct Encoder {
  std::string& out;
  bool v5;
  void operator()(const Connect& c) const { encodeConnect(c, out); }
  void operator()(const Connack& c) const {
    if (v5) {
      encodeConnack5(c, out);
    } else {
      encodeConnack(c.sessionPresent, c.returnCode, out);
    }
  }
  void operator()(const Publish& p) const {
    if (v5) {
      encodePublish5(p.topic, p.payload, p.qos, p.retain, p.dup, p.packetId, &p.properties, nullptr,
                     out);
    } else {
      encodePublish(p.topic, p.payload, p.qos, p.retain, p.dup, p.packetId, out);
    }
  }
  void operator()(const Ack& a) const {
    if (v5) {
      encodeAck5(a.type, a.packetId, a.reasonCode, &a.properties, out);
    } else {
      encodeAck(a.type, a.packetId, out);
    }
  }
  void operator()(const Subscribe& s) const {
    if (v5) {
      encodeSubscribe5(s, out);
    } else {
      encodeSubscribe(s, out);
    }
  }
  void operator()(const Suback& s) const {
    if (v5) {
      encodeSuback5(s, out);
    } else {
      encodeSuback(s.packetId, s.returnCodes, out);
    }
  }
  void operator()(const Unsubscribe& u) const {
    if (v5) {
      encodeUnsubscribe5(u, out);
    } else {
      encodeUnsubscribe(u, out);
    }
  }
  void operator()(const Unsuback& u) const {
    if (v5) {
      encodeUnsuback5(u, out);
    } else {
      encodeAck(PacketType::kUnsuback, u.packetId, out);
    }
  }
  void operator()(const Empty& e) const { encodeEmpty(e.type, out); }
  void operator()(const Disconnect& d) const {
    if (v5) {
      encodeDisconnect5(d.reasonCode, &d.properties, out);
    } else {
      encodeEmpty(PacketType::kDisconnect, out);
    }
  }
  void operator()(const Auth& a) const { encodeAuth(a, out); }
};

}  // namespace

void encode(const Packet& packet, std::string& out, ProtocolVersion version) {
  std::visit(Encoder{out, version == ProtocolVersion::kV5}, packet);
}

}  // namespace tern::codec::mqtt
