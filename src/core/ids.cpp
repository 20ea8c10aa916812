#include "core/ids.h"

#include <unistd.h>

#include <array>
#include <cstdint>
#include <random>

namespace tern::core {

namespace {

// One engine per thread: no locking, and each is seeded independently from the OS.
std::mt19937_64& engine() {
  thread_local std::mt19937_64 eng = [] {
    std::random_device device;
    std::seed_seq seq{device(), device(), device(), device(),
                      device(), device(), device(), device()};
    return std::mt19937_64(seq);
  }();
  return eng;
}

}  // namespace

std::string randomUuid() {
  auto& eng = engine();
  std::array<std::uint8_t, 16> bytes{};
  for (std::size_t i = 0; i < bytes.size(); i += 8) {
    std::uint64_t word = eng();
    for (std::size_t j = 0; j < 8; ++j) {
      bytes[i + j] = static_cast<std::uint8_t>(word >> (8 * j));
    }
  }
  bytes[6] = static_cast<std::uint8_t>((bytes[6] & 0x0F) | 0x40);  // version 4
  bytes[8] = static_cast<std::uint8_t>((bytes[8] & 0x3F) | 0x80);  // RFC 4122 variant

  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(36);
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) {
      out.push_back('-');
    }
    out.push_back(kHex[bytes[i] >> 4]);
    out.push_back(kHex[bytes[i] & 0x0F]);
  }
  return out;
}

std::string hostName() {
  std::array<char, 256> buf{};
  // gethostname may not terminate a truncated name, so leave the last byte as the terminator.
  if (gethostname(buf.data(), buf.size() - 1) != 0 || buf[0] == '\0') {
    return "tern";
  }
  return std::string(buf.data());
}

}  // namespace tern::core
