#pragma once
// HAProxy PROXY protocol, versions 1 (text) and 2 (binary): a pure parser, no I/O. A load
// balancer that terminates the client's TCP connection sends one header first on its own
// connection to us, naming the client's real address; the protocol's bytes follow it.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace tern::net {

// The longest v1 line, "\r\n" included (fixed by the specification).
inline constexpr std::size_t kProxyV1MaxLength = 107;
// The v2 fixed part: 12-byte signature, version/command, family, 16-bit length.
inline constexpr std::size_t kProxyV2FixedLength = 16;
// Our bound on a whole v2 header (fixed part + addresses + TLVs). The largest address block is
// 216 bytes (AF_UNIX); the rest is room for TLVs. Anything longer is rejected.
inline constexpr std::size_t kProxyMaxHeaderLength = 4096;

enum class ProxyParseStatus {
  kNeedMore,  // what is there is a valid beginning; read more
  kOk,
  kInvalid,  // not a PROXY header, or a malformed one: close the connection
};

enum class ProxyFamily {
  kUnspecified,  // LOCAL (v2), UNKNOWN (v1), UNSPEC (v2): use the socket's own peer
  kIpv4,
  kIpv6,
};

struct ProxyParseResult {
  ProxyParseStatus status = ProxyParseStatus::kNeedMore;
  int version = 0;  // 1 or 2, once known
  // kOk: the header's length; the bytes after it belong to the proxied protocol.
  std::size_t length = 0;
  // kOk: kUnspecified means the header carries no client address (health checks from the
  // proxy itself, or an unknown protocol): the connection's own endpoints are the real ones.
  ProxyFamily family = ProxyFamily::kUnspecified;
  std::string sourceAddress;  // canonical text, e.g. "203.0.113.7", "2001:db8::1"
  std::uint16_t sourcePort = 0;
  std::string destinationAddress;
  std::uint16_t destinationPort = 0;
  const char* error = nullptr;  // kInvalid: what is wrong (a static string)

  bool hasAddress() const {
    return status == ProxyParseStatus::kOk && family != ProxyFamily::kUnspecified;
  }
};

// Parses the PROXY header at the start of `data` (which may hold more bytes after it, or only
// part of it). Never reads past `data`; never needs more than kProxyMaxHeaderLength bytes to
// decide: with that many bytes the answer is kOk or kInvalid.
ProxyParseResult parseProxyHeader(std::string_view data);

}  // namespace tern::net
