#include "net/proxy_protocol.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

namespace tern::net {
namespace {

const std::string kSignature("\r\n\r\n\0\r\nQUIT\n", 12);

std::string bytes(std::initializer_list<int> values) {
  std::string out;
  for (int v : values) out.push_back(static_cast<char>(v));
  return out;
}

std::string be16(std::size_t value) {
  return bytes({static_cast<int>((value >> 8) & 0xff), static_cast<int>(value & 0xff)});
}

// A v2 header: signature, version/command, family, then `block` (addresses and TLVs).
std::string v2(int versionCommand, int family, const std::string& block) {
  return kSignature + bytes({versionCommand, family}) + be16(block.size()) + block;
}

std::string ipv4Block() {
  // 192.0.2.10:51234 → 198.51.100.1:1883
  return bytes({192, 0, 2, 10, 198, 51, 100, 1}) + be16(51234) + be16(1883);
}

std::string ipv6Block() {
  // 2001:db8::1:51234 → 2001:db8::2:8883
  std::string source(16, '\0');
  std::string destination(16, '\0');
  source[0] = 0x20;
  source[1] = 0x01;
  source[2] = 0x0d;
  source[3] = static_cast<char>(0xb8);
  destination = source;
  source[15] = 1;
  destination[15] = 2;
  return source + destination + be16(51234) + be16(8883);
}

std::string tlv(int type, const std::string& value) {
  return bytes({type}) + be16(value.size()) + value;
}

ProxyParseResult parse(const std::string& data) {
  return parseProxyHeader(data);
}

void expectInvalid(const std::string& data, const std::string& label) {
  ProxyParseResult r = parse(data);
  EXPECT_EQ(r.status, ProxyParseStatus::kInvalid) << label;
  EXPECT_NE(r.error, nullptr) << label;
}

// Every proper prefix needs more; the whole header is accepted with exactly its length, and so
// is the header followed by protocol bytes.
void expectByteAtATime(const std::string& header, const std::string& label) {
  for (std::size_t n = 0; n < header.size(); ++n) {
    ProxyParseResult r = parse(header.substr(0, n));
    ASSERT_EQ(r.status, ProxyParseStatus::kNeedMore) << label << " at " << n << " bytes";
  }
  ProxyParseResult whole = parse(header);
  ASSERT_EQ(whole.status, ProxyParseStatus::kOk)
      << label << ": " << (whole.error ? whole.error : "");
  EXPECT_EQ(whole.length, header.size()) << label;
  ProxyParseResult more = parse(header + bytes({0x10, 0x0c, 0x00}));
  ASSERT_EQ(more.status, ProxyParseStatus::kOk) << label;
  EXPECT_EQ(more.length, header.size()) << label;
}

TEST(ProxyProtocolTest, V1Tcp4) {
  const std::string header = "PROXY TCP4 192.0.2.10 198.51.100.1 51234 1883\r\n";
  ProxyParseResult r = parse(header + "MQTT bytes follow");
  ASSERT_EQ(r.status, ProxyParseStatus::kOk);
  EXPECT_EQ(r.version, 1);
  EXPECT_EQ(r.length, header.size());
  EXPECT_EQ(r.family, ProxyFamily::kIpv4);
  EXPECT_TRUE(r.hasAddress());
  EXPECT_EQ(r.sourceAddress, "192.0.2.10");
  EXPECT_EQ(r.sourcePort, 51234);
  EXPECT_EQ(r.destinationAddress, "198.51.100.1");
  EXPECT_EQ(r.destinationPort, 1883);
  EXPECT_EQ(r.error, nullptr);
}

TEST(ProxyProtocolTest, V1Tcp6IsCanonicalised) {
  const std::string header = "PROXY TCP6 2001:DB8:0:0:0:0:0:1 ::ffff:192.0.2.1 0 65535\r\n";
  ProxyParseResult r = parse(header);
  ASSERT_EQ(r.status, ProxyParseStatus::kOk);
  EXPECT_EQ(r.family, ProxyFamily::kIpv6);
  EXPECT_EQ(r.sourceAddress, "2001:db8::1");
  EXPECT_EQ(r.destinationAddress, "::ffff:192.0.2.1");
  EXPECT_EQ(r.sourcePort, 0);
  EXPECT_EQ(r.destinationPort, 65535);
  EXPECT_EQ(r.length, header.size());
}

TEST(ProxyProtocolTest, V1Unknown) {
  ProxyParseResult r = parse("PROXY UNKNOWN\r\nrest");
  ASSERT_EQ(r.status, ProxyParseStatus::kOk);
  EXPECT_EQ(r.family, ProxyFamily::kUnspecified);
  EXPECT_FALSE(r.hasAddress());
  EXPECT_EQ(r.length, 15u);
  // Whatever follows UNKNOWN on the line is ignored.
  const std::string withAddresses = "PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n";
  r = parse(withAddresses);
  ASSERT_EQ(r.status, ProxyParseStatus::kOk);
  EXPECT_EQ(r.family, ProxyFamily::kUnspecified);
  EXPECT_EQ(r.length, withAddresses.size());
}

TEST(ProxyProtocolTest, V1LongestLineIs107Bytes) {
  const std::string longest =
      "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
      "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
  ProxyParseResult r = parse(longest);
  ASSERT_EQ(r.status, ProxyParseStatus::kOk);
  EXPECT_EQ(r.sourceAddress, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");

  const std::string prefix = "PROXY UNKNOWN ";
  const std::string exact = prefix + std::string(107 - prefix.size() - 2, 'x') + "\r\n";
  ASSERT_EQ(exact.size(), 107u);
  r = parse(exact);
  ASSERT_EQ(r.status, ProxyParseStatus::kOk);
  EXPECT_EQ(r.length, 107u);

  const std::string over = prefix + std::string(107 - prefix.size() - 1, 'x') + "\r\n";
  expectInvalid(over, "108 bytes");
  // Without a line end the parser gives up at 107 bytes rather than waiting.
  expectInvalid(prefix + std::string(200, 'x'), "no CRLF");
  EXPECT_EQ(parse(prefix + std::string(107 - prefix.size() - 1, 'x')).status,
            ProxyParseStatus::kNeedMore);
  expectInvalid(prefix + std::string(107 - prefix.size(), 'x'), "107 bytes, no CRLF");
  // CR as the 107th byte cannot be followed by its LF within the limit.
  expectInvalid(prefix + std::string(107 - prefix.size() - 1, 'x') + "\r", "CR at 107");
}

TEST(ProxyProtocolTest, V2Ipv4) {
  const std::string header = v2(0x21, 0x11, ipv4Block());
  ProxyParseResult r = parse(header + "tail");
  ASSERT_EQ(r.status, ProxyParseStatus::kOk);
  EXPECT_EQ(r.version, 2);
  EXPECT_EQ(r.length, 28u);
  EXPECT_EQ(r.family, ProxyFamily::kIpv4);
  EXPECT_EQ(r.sourceAddress, "192.0.2.10");
  EXPECT_EQ(r.sourcePort, 51234);
  EXPECT_EQ(r.destinationAddress, "198.51.100.1");
  EXPECT_EQ(r.destinationPort, 1883);
}

TEST(ProxyProtocolTest, V2Ipv6WithTlvs) {
  const std::string block = ipv6Block() + tlv(0x01, "mqtt") + tlv(0x04, std::string(7, '\0')) +
                            tlv(0x20, "") + tlv(0xEE, std::string(300, 'z'));
  const std::string header = v2(0x21, 0x21, block);
  ProxyParseResult r = parse(header + "tail");
  ASSERT_EQ(r.status, ProxyParseStatus::kOk);
  EXPECT_EQ(r.length, header.size());
  EXPECT_EQ(r.family, ProxyFamily::kIpv6);
  EXPECT_EQ(r.sourceAddress, "2001:db8::1");
  EXPECT_EQ(r.sourcePort, 51234);
  EXPECT_EQ(r.destinationAddress, "2001:db8::2");
  EXPECT_EQ(r.destinationPort, 8883);
}

TEST(ProxyProtocolTest, V2LocalAndUnspecUseTheSocketPeer) {
  // LOCAL: the proxy's own health check; family and block are ignored.
  for (int family : {0x00, 0x11, 0x21, 0x31, 0x12, 0xff}) {
    const std::string header = v2(0x20, family, std::string(5, 'q'));
    ProxyParseResult r = parse(header);
    ASSERT_EQ(r.status, ProxyParseStatus::kOk) << family;
    EXPECT_EQ(r.family, ProxyFamily::kUnspecified);
    EXPECT_EQ(r.length, header.size());
  }
  ProxyParseResult r = parse(v2(0x20, 0x00, ""));
  ASSERT_EQ(r.status, ProxyParseStatus::kOk);
  EXPECT_EQ(r.length, 16u);
  r = parse(v2(0x21, 0x00, std::string(8, 'u')));
  ASSERT_EQ(r.status, ProxyParseStatus::kOk);
  EXPECT_EQ(r.family, ProxyFamily::kUnspecified);
  EXPECT_EQ(r.length, 24u);
}

TEST(ProxyProtocolTest, V2LengthBound) {
  // Exactly kProxyMaxHeaderLength is accepted, one more is refused as soon as the length is read.
  const std::size_t room = kProxyMaxHeaderLength - kProxyV2FixedLength - ipv4Block().size() - 3;
  const std::string largest = v2(0x21, 0x11, ipv4Block() + tlv(0xE0, std::string(room, 'a')));
  ASSERT_EQ(largest.size(), kProxyMaxHeaderLength);
  ProxyParseResult r = parse(largest);
  ASSERT_EQ(r.status, ProxyParseStatus::kOk);
  EXPECT_EQ(r.length, kProxyMaxHeaderLength);
  const std::string tooLong = v2(0x21, 0x11, ipv4Block() + tlv(0xE0, std::string(room + 1, 'a')));
  expectInvalid(tooLong.substr(0, 16), "fixed part announcing 4097 bytes");
  expectInvalid(tooLong, "4097 bytes");
  expectInvalid(kSignature + bytes({0x21, 0x11, 0xff, 0xff}), "65535-byte block");
}

TEST(ProxyProtocolTest, ByteAtATime) {
  expectByteAtATime("PROXY TCP4 192.0.2.10 198.51.100.1 51234 1883\r\n", "v1 TCP4");
  expectByteAtATime("PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n", "v1 TCP6");
  expectByteAtATime("PROXY UNKNOWN\r\n", "v1 UNKNOWN");
  expectByteAtATime(v2(0x21, 0x11, ipv4Block()), "v2 IPv4");
  expectByteAtATime(v2(0x21, 0x21, ipv6Block() + tlv(0x05, "unique-id")), "v2 IPv6 + TLV");
  expectByteAtATime(v2(0x20, 0x00, ""), "v2 LOCAL");
  expectByteAtATime(v2(0x21, 0x00, "xyz"), "v2 UNSPEC");
}

TEST(ProxyProtocolTest, NotAProxyHeaderIsRejectedAtTheFirstWrongByte) {
  EXPECT_EQ(parse("").status, ProxyParseStatus::kNeedMore);
  // An MQTT CONNECT, an HTTP request, a GT06 frame: wrong from the first byte.
  expectInvalid(bytes({0x10, 0x0c}), "MQTT CONNECT");
  expectInvalid("GET / HTTP/1.1\r\n", "HTTP");
  expectInvalid(bytes({0x78, 0x78}), "GT06");
  expectInvalid("P!", "second byte");
  expectInvalid("PROXZ", "fifth byte");
  expectInvalid("PROXY\r\n", "no space after PROXY");
  expectInvalid("proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "lower case");
  expectInvalid(std::string("\r\n\r\n\0\r\nQUIX", 12), "v2 signature");
  expectInvalid(std::string("\r\nX"), "v2 signature early");
  // A valid beginning waits.
  EXPECT_EQ(parse("P").status, ProxyParseStatus::kNeedMore);
  EXPECT_EQ(parse("PROXY TC").status, ProxyParseStatus::kNeedMore);
  EXPECT_EQ(parse("\r").status, ProxyParseStatus::kNeedMore);
  EXPECT_EQ(parse(kSignature.substr(0, 7)).status, ProxyParseStatus::kNeedMore);
}

TEST(ProxyProtocolTest, MalformedV1) {
  const std::vector<std::pair<std::string, std::string>> cases{
      {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "LF without CR"},
      {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX", "CR without LF"},
      {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n", "CR CR LF"},
      {"PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n", "tab"},
      {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\x80\r\n", "non-ASCII"},
      {std::string("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\0\r\n", 33), "NUL"},
      {"PROXY \r\n", "nothing after PROXY"},
      {"PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "two spaces"},
      {"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", "two spaces between addresses"},
      {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", "trailing space"},
      {"PROXY TCP4\r\n", "no addresses"},
      {"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "one port"},
      {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "three ports"},
      {"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", "unknown protocol"},
      {"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", "lower-case protocol"},
      {"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", "UDP"},
      {"PROXY UNKNOWNX\r\n", "UNKNOWN with a suffix"},
      {"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", "three octets"},
      {"PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n", "five octets"},
      {"PROXY TCP4 256.2.3.4 5.6.7.8 1 2\r\n", "octet 256"},
      {"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", "leading zero octet"},
      {"PROXY TCP4 1.2.3.4 5.6.7. 1 2\r\n", "empty octet"},
      {"PROXY TCP4 1..3.4 5.6.7.8 1 2\r\n", "empty middle octet"},
      {"PROXY TCP4 1.2.3.4 5.6.7.8x 1 2\r\n", "letter in address"},
      {"PROXY TCP4 1.2.3.4 1000.6.7.8 1 2\r\n", "four-digit octet"},
      {"PROXY TCP4 ::1 ::1 1 2\r\n", "IPv6 address in TCP4"},
      {"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n", "IPv4 address in TCP6"},
      {"PROXY TCP6 ::1%eth0 ::1 1 2\r\n", "zone id"},
      {"PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n", "nine groups"},
      {"PROXY TCP6 1::2::3 ::1 1 2\r\n", "two ::"},
      {"PROXY TCP6 [::1] ::1 1 2\r\n", "brackets"},
      {"PROXY TCP6 ::g ::1 1 2\r\n", "bad hex"},
      {"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "port 65536"},
      {"PROXY TCP4 1.2.3.4 5.6.7.8 1 099999\r\n", "six-digit port"},
      {"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", "leading zero port"},
      {"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", "negative port"},
      {"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", "plus port"},
      {"PROXY TCP4 1.2.3.4 5.6.7.8 1 0x10\r\n", "hex port"},
      {"PROXY TCP4 1.2.3.4 5.6.7.8 1 2a\r\n", "letter in port"},
  };
  for (const auto& [data, label] : cases) expectInvalid(data, label);
}

TEST(ProxyProtocolTest, MalformedV2) {
  const std::string good = v2(0x21, 0x11, ipv4Block());
  // Any changed signature byte.
  for (std::size_t i = 0; i < kSignature.size(); ++i) {
    std::string bad = good;
    bad[i] = static_cast<char>(bad[i] ^ 0x40);
    expectInvalid(bad, "signature byte " + std::to_string(i));
  }
  expectInvalid(v2(0x11, 0x11, ipv4Block()), "version 1");
  expectInvalid(v2(0x31, 0x11, ipv4Block()), "version 3");
  expectInvalid(v2(0x01, 0x11, ipv4Block()), "version 0");
  expectInvalid(v2(0x22, 0x11, ipv4Block()), "command 2");
  expectInvalid(v2(0x2f, 0x11, ipv4Block()), "command 15");
  expectInvalid(kSignature + bytes({0x22}), "bad command, decided early");
  expectInvalid(v2(0x21, 0x12, ipv4Block()), "UDP over IPv4");
  expectInvalid(v2(0x21, 0x22, ipv6Block()), "UDP over IPv6");
  expectInvalid(v2(0x21, 0x31, std::string(216, '\0')), "UNIX stream");
  expectInvalid(v2(0x21, 0x10, ipv4Block()), "IPv4 without transport");
  expectInvalid(v2(0x21, 0x01, ipv4Block()), "UNSPEC family, stream");
  expectInvalid(v2(0x21, 0x41, ipv4Block()), "family 4");
  expectInvalid(kSignature + bytes({0x21, 0x13}), "bad family, decided early");
  expectInvalid(v2(0x21, 0x11, ipv4Block().substr(0, 11)), "IPv4 block too short");
  expectInvalid(v2(0x21, 0x21, ipv6Block().substr(0, 35)), "IPv6 block too short");
  expectInvalid(v2(0x21, 0x21, ipv4Block()), "IPv6 family with an IPv4 block");
  // The short length is known from the fixed part alone.
  expectInvalid(kSignature + bytes({0x21, 0x11}) + be16(4), "short block, decided early");
  expectInvalid(v2(0x21, 0x11, ipv4Block() + bytes({0x01})), "one byte after addresses");
  expectInvalid(v2(0x21, 0x11, ipv4Block() + bytes({0x01, 0x00})), "two bytes after addresses");
  expectInvalid(v2(0x21, 0x11, ipv4Block() + bytes({0x01, 0x00, 0x05, 'a', 'b'})),
                "TLV longer than the block");
  expectInvalid(v2(0x21, 0x11, ipv4Block() + tlv(0x01, "ok") + bytes({0x02, 0xff, 0xff})),
                "second TLV runs past the end");
}

TEST(ProxyProtocolTest, DecidesWithinTheBound) {
  // With kProxyMaxHeaderLength bytes that start like a header, the answer is never kNeedMore.
  const std::vector<std::string> starts{"PROXY ", "PROXY UNKNOWN ", kSignature,
                                        kSignature + bytes({0x21, 0x11, 0x0f, 0xf0}),
                                        kSignature + bytes({0x20, 0x00, 0x0f, 0xf0})};
  for (const auto& start : starts) {
    for (char fill : {'a', ' ', '\0', '\xff'}) {
      std::string data = start + std::string(kProxyMaxHeaderLength, fill);
      data.resize(kProxyMaxHeaderLength);
      EXPECT_NE(parse(data).status, ProxyParseStatus::kNeedMore)
          << start.size() << "/" << int(fill);
    }
  }
}

}  // namespace
}  // namespace tern::net
