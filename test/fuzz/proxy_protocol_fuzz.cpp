// libFuzzer target for the PROXY protocol parser. Beyond not crashing, checks the parser's
// contract: it decides within kProxyMaxHeaderLength bytes, an accepted header's length fits the
// input and the bound, the same header alone parses the same way while every shorter prefix of
// it only needs more, and an accepted address is well formed. Any violation aborts.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "net/proxy_protocol.h"

namespace {

using namespace tern::net;

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "proxy_protocol_fuzz: %s\n", what);
  std::abort();
}

bool sameResult(const ProxyParseResult& a, const ProxyParseResult& b) {
  return a.status == b.status && a.version == b.version && a.length == b.length &&
         a.family == b.family && a.sourceAddress == b.sourceAddress &&
         a.sourcePort == b.sourcePort && a.destinationAddress == b.destinationAddress &&
         a.destinationPort == b.destinationPort;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const ProxyParseResult result = parseProxyHeader(input);
  switch (result.status) {
    case ProxyParseStatus::kNeedMore:
      if (size >= kProxyMaxHeaderLength) fail("kNeedMore with kProxyMaxHeaderLength bytes");
      // A valid beginning's own beginning is valid too (rejection is never taken back).
      if (size > 0 &&
          parseProxyHeader(input.substr(0, size - 1)).status != ProxyParseStatus::kNeedMore) {
        fail("a prefix of a valid beginning is not a valid beginning");
      }
      return 0;
    case ProxyParseStatus::kInvalid:
      if (result.error == nullptr) fail("kInvalid without an error text");
      return 0;
    case ProxyParseStatus::kOk:
      break;
  }
  if (result.error != nullptr) fail("kOk with an error text");
  if (result.length == 0 || result.length > size) fail("header length out of the input");
  if (result.length > kProxyMaxHeaderLength) fail("header longer than the bound");
  if (result.version == 1 && result.length > kProxyV1MaxLength) fail("v1 header over 107 bytes");
  if (result.version != 1 && result.version != 2) fail("kOk without a version");
  if (result.family == ProxyFamily::kUnspecified) {
    if (!result.sourceAddress.empty() || !result.destinationAddress.empty()) {
      fail("addresses without a family");
    }
  } else if (result.sourceAddress.empty() || result.destinationAddress.empty()) {
    fail("family without addresses");
  }
  // The header alone: the same answer.
  const std::string_view header = input.substr(0, result.length);
  if (!sameResult(parseProxyHeader(header), result)) fail("header alone parses differently");
  // Shorter prefixes only need more (all of them for short headers, a sample for long ones).
  const std::size_t step = result.length <= 256 ? 1 : result.length / 64;
  for (std::size_t n = 0; n < result.length; n += step) {
    if (parseProxyHeader(header.substr(0, n)).status != ProxyParseStatus::kNeedMore) {
      fail("a prefix of an accepted header does not need more");
    }
  }
  if (parseProxyHeader(header.substr(0, result.length - 1)).status != ProxyParseStatus::kNeedMore) {
    fail("the header minus its last byte does not need more");
  }
  return 0;
}
