#include "net/proxy_protocol.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <array>
#include <cstring>

namespace tern::net {

namespace {

constexpr std::string_view kV1Prefix = "PROXY ";
constexpr std::string_view kV2Signature{"\r\n\r\n\0\r\nQUIT\n", 12};

// v2 byte 13: version 2 in the high nibble, command in the low one.
constexpr std::uint8_t kV2Version = 0x2;
constexpr std::uint8_t kV2CommandLocal = 0x0;
constexpr std::uint8_t kV2CommandProxy = 0x1;
// v2 byte 14: address family (high nibble) and transport (low nibble).
constexpr std::uint8_t kV2Unspec = 0x00;
constexpr std::uint8_t kV2TcpIpv4 = 0x11;
constexpr std::uint8_t kV2TcpIpv6 = 0x21;
constexpr std::size_t kV2Ipv4Block = 4 + 4 + 2 + 2;
constexpr std::size_t kV2Ipv6Block = 16 + 16 + 2 + 2;
constexpr std::size_t kTlvHeader = 3;  // type, 16-bit length

ProxyParseResult needMore(int version) {
  ProxyParseResult r;
  r.status = ProxyParseStatus::kNeedMore;
  r.version = version;
  return r;
}

ProxyParseResult invalid(int version, const char* error) {
  ProxyParseResult r;
  r.status = ProxyParseStatus::kInvalid;
  r.version = version;
  r.error = error;
  return r;
}

// True when the shorter of `data` and `expected` is a prefix of the other.
bool matchesSoFar(std::string_view data, std::string_view expected) {
  const std::size_t n = data.size() < expected.size() ? data.size() : expected.size();
  return data.substr(0, n) == expected.substr(0, n);
}

bool isDigit(char c) {
  return c >= '0' && c <= '9';
}

// Decimal without sign or leading zeros ("0" itself is fine), at most `maxValue`.
bool parseDecimal(std::string_view text, std::uint32_t maxValue, std::uint32_t& value) {
  if (text.empty() || text.size() > 5 || (text.size() > 1 && text[0] == '0')) return false;
  std::uint32_t v = 0;
  for (char c : text) {
    if (!isDigit(c)) return false;
    v = v * 10 + static_cast<std::uint32_t>(c - '0');
  }
  if (v > maxValue) return false;
  value = v;
  return true;
}

// Dotted quad, four decimal parts 0..255 without leading zeros.
bool validIpv4(std::string_view text) {
  int parts = 0;
  while (true) {
    const std::size_t dot = text.find('.');
    std::string_view part = text.substr(0, dot);
    std::uint32_t value = 0;
    if (part.size() > 3 || !parseDecimal(part, 255, value)) return false;
    ++parts;
    if (dot == std::string_view::npos) break;
    text.remove_prefix(dot + 1);
  }
  return parts == 4;
}

// Validates IPv6 text and returns its canonical form (empty when invalid).
std::string canonicalIpv6(std::string_view text) {
  // The longest form is eight groups with an embedded dotted quad: 45 characters.
  std::array<char, 64> buffer{};
  if (text.empty() || text.size() >= buffer.size()) return {};
  for (char c : text) {
    const bool ok =
        isDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':' || c == '.';
    if (!ok) return {};
  }
  std::memcpy(buffer.data(), text.data(), text.size());
  in6_addr address{};
  if (::inet_pton(AF_INET6, buffer.data(), &address) != 1) return {};
  std::array<char, INET6_ADDRSTRLEN> out{};
  if (::inet_ntop(AF_INET6, &address, out.data(), static_cast<socklen_t>(out.size())) == nullptr) {
    return {};
  }
  return std::string(out.data());
}

std::string ipv4Text(const unsigned char* bytes) {
  std::string out;
  for (int i = 0; i < 4; ++i) {
    if (i > 0) out.push_back('.');
    out += std::to_string(static_cast<unsigned>(bytes[i]));
  }
  return out;
}

std::string ipv6Text(const unsigned char* bytes) {
  in6_addr address{};
  std::memcpy(&address, bytes, sizeof(address));
  std::array<char, INET6_ADDRSTRLEN> out{};
  if (::inet_ntop(AF_INET6, &address, out.data(), static_cast<socklen_t>(out.size())) == nullptr) {
    return {};
  }
  return std::string(out.data());
}

std::uint16_t bigEndian16(const unsigned char* bytes) {
  return static_cast<std::uint16_t>((bytes[0] << 8) | bytes[1]);
}

// Splits `line` at single spaces into at most `max` fields; false on empty fields or too many.
template <std::size_t N>
bool splitFields(std::string_view line, std::array<std::string_view, N>& fields,
                 std::size_t& count) {
  count = 0;
  while (true) {
    const std::size_t space = line.find(' ');
    std::string_view field = line.substr(0, space);
    if (field.empty() || count == N) return false;
    fields[count++] = field;
    if (space == std::string_view::npos) return true;
    line.remove_prefix(space + 1);
  }
}

// "PROXY TCP4|TCP6|UNKNOWN src dst sport dport\r\n"
ProxyParseResult parseV1(std::string_view data) {
  if (!matchesSoFar(data, kV1Prefix)) return invalid(1, "not a PROXY header");
  // Find the end of the line within the maximum length, checking every byte on the way.
  const std::size_t limit = data.size() < kProxyV1MaxLength ? data.size() : kProxyV1MaxLength;
  std::size_t end = std::string_view::npos;  // index of '\r' of the final "\r\n"
  for (std::size_t i = 0; i < limit; ++i) {
    const char c = data[i];
    if (c == '\r') {
      if (i + 2 > kProxyV1MaxLength) return invalid(1, "v1 header longer than 107 bytes");
      if (i + 1 == data.size()) return needMore(1);  // its '\n' has not arrived yet
      if (data[i + 1] != '\n') return invalid(1, "v1 header: CR not followed by LF");
      end = i;
      break;
    }
    if (c == '\n') return invalid(1, "v1 header: LF without CR");
    if (c < 0x20 || c > 0x7e) return invalid(1, "v1 header: control or non-ASCII byte");
  }
  if (end == std::string_view::npos) {
    if (data.size() >= kProxyV1MaxLength) return invalid(1, "v1 header longer than 107 bytes");
    return needMore(1);
  }

  std::string_view line = data.substr(kV1Prefix.size(), end - kV1Prefix.size());
  ProxyParseResult r;
  r.version = 1;
  r.length = end + 2;
  // UNKNOWN: the proxy could not tell; whatever follows on the line is ignored.
  if (line == "UNKNOWN" || line.substr(0, 8) == "UNKNOWN ") {
    r.status = ProxyParseStatus::kOk;
    r.family = ProxyFamily::kUnspecified;
    return r;
  }
  std::array<std::string_view, 5> fields;
  std::size_t count = 0;
  if (!splitFields(line, fields, count) || count != 5) {
    return invalid(1, "v1 header: expected protocol, two addresses and two ports");
  }
  if (fields[0] == "TCP4") {
    if (!validIpv4(fields[1]) || !validIpv4(fields[2])) {
      return invalid(1, "v1 header: bad IPv4 address");
    }
    r.family = ProxyFamily::kIpv4;
    r.sourceAddress = std::string(fields[1]);
    r.destinationAddress = std::string(fields[2]);
  } else if (fields[0] == "TCP6") {
    r.sourceAddress = canonicalIpv6(fields[1]);
    r.destinationAddress = canonicalIpv6(fields[2]);
    if (r.sourceAddress.empty() || r.destinationAddress.empty()) {
      return invalid(1, "v1 header: bad IPv6 address");
    }
    r.family = ProxyFamily::kIpv6;
  } else {
    return invalid(1, "v1 header: protocol is not TCP4, TCP6 or UNKNOWN");
  }
  std::uint32_t sourcePort = 0;
  std::uint32_t destinationPort = 0;
  if (!parseDecimal(fields[3], 65535, sourcePort) ||
      !parseDecimal(fields[4], 65535, destinationPort)) {
    return invalid(1, "v1 header: bad port");
  }
  r.sourcePort = static_cast<std::uint16_t>(sourcePort);
  r.destinationPort = static_cast<std::uint16_t>(destinationPort);
  r.status = ProxyParseStatus::kOk;
  return r;
}

// 12-byte signature, version/command, family/transport, 16-bit length, then that many bytes:
// addresses and TLVs.
ProxyParseResult parseV2(std::string_view data) {
  if (!matchesSoFar(data, kV2Signature)) return invalid(2, "not a PROXY header");
  if (data.size() <= kV2Signature.size()) return needMore(2);
  const auto* bytes = reinterpret_cast<const unsigned char*>(data.data());
  const std::uint8_t versionCommand = bytes[12];
  if ((versionCommand >> 4) != kV2Version) return invalid(2, "v2 header: unsupported version");
  const std::uint8_t command = versionCommand & 0x0f;
  if (command != kV2CommandLocal && command != kV2CommandProxy) {
    return invalid(2, "v2 header: unknown command");
  }
  if (data.size() < 14) return needMore(2);
  const std::uint8_t family = bytes[13];
  // LOCAL ignores the family; PROXY must name one we can use on a TCP listener.
  if (command == kV2CommandProxy && family != kV2Unspec && family != kV2TcpIpv4 &&
      family != kV2TcpIpv6) {
    return invalid(2, "v2 header: unsupported address family or transport");
  }
  if (data.size() < kProxyV2FixedLength) return needMore(2);
  const std::size_t blockLength = bigEndian16(bytes + 14);
  const std::size_t total = kProxyV2FixedLength + blockLength;
  if (total > kProxyMaxHeaderLength) return invalid(2, "v2 header longer than 4096 bytes");
  std::size_t addressLength = 0;
  if (command == kV2CommandProxy && family == kV2TcpIpv4) addressLength = kV2Ipv4Block;
  if (command == kV2CommandProxy && family == kV2TcpIpv6) addressLength = kV2Ipv6Block;
  if (blockLength < addressLength) return invalid(2, "v2 header: address block too short");
  if (data.size() < total) return needMore(2);

  ProxyParseResult r;
  r.version = 2;
  r.length = total;
  if (addressLength == 0) {
    // LOCAL (the proxy's own health check) or UNSPEC: no client address; the block is ignored.
    r.status = ProxyParseStatus::kOk;
    r.family = ProxyFamily::kUnspecified;
    return r;
  }
  const unsigned char* block = bytes + kProxyV2FixedLength;
  if (family == kV2TcpIpv4) {
    r.family = ProxyFamily::kIpv4;
    r.sourceAddress = ipv4Text(block);
    r.destinationAddress = ipv4Text(block + 4);
    r.sourcePort = bigEndian16(block + 8);
    r.destinationPort = bigEndian16(block + 10);
  } else {
    r.family = ProxyFamily::kIpv6;
    r.sourceAddress = ipv6Text(block);
    r.destinationAddress = ipv6Text(block + 16);
    r.sourcePort = bigEndian16(block + 32);
    r.destinationPort = bigEndian16(block + 34);
    if (r.sourceAddress.empty() || r.destinationAddress.empty()) {
      return invalid(2, "v2 header: bad IPv6 address");
    }
  }
  // TLVs are skipped, but they must tile the rest of the block exactly.
  std::size_t offset = addressLength;
  while (offset < blockLength) {
    if (blockLength - offset < kTlvHeader) return invalid(2, "v2 header: truncated TLV");
    const std::size_t valueLength = bigEndian16(block + offset + 1);
    if (valueLength > blockLength - offset - kTlvHeader) {
      return invalid(2, "v2 header: TLV runs past the header");
    }
    offset += kTlvHeader + valueLength;
  }
  r.status = ProxyParseStatus::kOk;
  return r;
}

}  // namespace

ProxyParseResult parseProxyHeader(std::string_view data) {
  if (data.empty()) return needMore(0);
  if (data[0] == kV1Prefix[0]) return parseV1(data);
  if (data[0] == kV2Signature[0]) return parseV2(data);
  return invalid(0, "not a PROXY header");
}

}  // namespace tern::net
