#include "codec/trackers/util.h"

namespace tern::codec::trackers {

std::uint8_t ByteReader::u8() {
  if (failed_ || pos_ + 1 > data_.size()) {
    failed_ = true;
    return 0;
  }
  return static_cast<std::uint8_t>(data_[pos_++]);
}

namespace {
// Reads n bytes as an unsigned integer; a short read consumes nothing more and yields 0.
template <class T>
T readInt(ByteReader& reader, std::size_t n, bool littleEndian) {
  std::string_view raw = reader.bytes(n);
  if (raw.size() != n) return 0;
  T value = 0;
  for (std::size_t i = 0; i < n; ++i) {
    auto b = static_cast<std::uint8_t>(raw[littleEndian ? n - 1 - i : i]);
    value = static_cast<T>((value << 8) | b);
  }
  return value;
}
}  // namespace

std::uint16_t ByteReader::u16() {
  return readInt<std::uint16_t>(*this, 2, false);
}
std::uint32_t ByteReader::u32() {
  return readInt<std::uint32_t>(*this, 4, false);
}
std::uint64_t ByteReader::u64() {
  return readInt<std::uint64_t>(*this, 8, false);
}
std::uint16_t ByteReader::u16le() {
  return readInt<std::uint16_t>(*this, 2, true);
}
std::uint32_t ByteReader::u32le() {
  return readInt<std::uint32_t>(*this, 4, true);
}

std::string_view ByteReader::bytes(std::size_t n) {
  if (failed_ || n > data_.size() - pos_) {
    failed_ = true;
    return {};
  }
  std::string_view out = data_.substr(pos_, n);
  pos_ += n;
  return out;
}

void ByteReader::skip(std::size_t n) {
  bytes(n);
}

void ByteReader::seek(std::size_t pos) {
  if (pos > data_.size()) {
    failed_ = true;
    return;
  }
  pos_ = pos;
}

namespace {

std::uint16_t crcReflected(std::string_view data, std::uint16_t poly, std::uint16_t init,
                           std::uint16_t xorOut) {
  std::uint16_t crc = init;
  for (char c : data) {
    crc ^= static_cast<std::uint8_t>(c);
    for (int i = 0; i < 8; ++i) {
      crc = (crc & 1) != 0 ? static_cast<std::uint16_t>((crc >> 1) ^ poly)
                           : static_cast<std::uint16_t>(crc >> 1);
    }
  }
  return static_cast<std::uint16_t>(crc ^ xorOut);
}

}  // namespace

// Reflected forms of the polynomials: 0x1021 → 0x8408, 0x8005 → 0xA001.
std::uint16_t crc16X25(std::string_view data) {
  return crcReflected(data, 0x8408, 0xFFFF, 0xFFFF);
}
std::uint16_t crc16Arc(std::string_view data) {
  return crcReflected(data, 0xA001, 0x0000, 0x0000);
}
std::uint16_t crc16Kermit(std::string_view data) {
  return crcReflected(data, 0x8408, 0x0000, 0x0000);
}

std::string toHex(std::string_view bytes, bool upper) {
  const char* digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) {
    auto b = static_cast<std::uint8_t>(c);
    out.push_back(digits[b >> 4]);
    out.push_back(digits[b & 0xF]);
  }
  return out;
}

std::optional<std::string> fromHex(std::string_view hex) {
  if (hex.size() % 2 != 0) return std::nullopt;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  out.reserve(hex.size() / 2);
  for (std::size_t i = 0; i < hex.size(); i += 2) {
    int hi = nibble(hex[i]);
    int lo = nibble(hex[i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out.push_back(static_cast<char>((hi << 4) | lo));
  }
  return out;
}

std::string bcdDigits(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) {
    auto b = static_cast<std::uint8_t>(c);
    out.push_back(static_cast<char>('0' + ((b >> 4) & 0xF) % 10));
    out.push_back(static_cast<char>('0' + (b & 0xF) % 10));
  }
  return out;
}

std::int64_t daysFromCivil(std::int64_t year, unsigned month, unsigned day) {
  year -= month <= 2 ? 1 : 0;
  const std::int64_t era = (year >= 0 ? year : year - 399) / 400;
  const auto yoe = static_cast<unsigned>(year - era * 400);
  const unsigned doy = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

std::optional<std::int64_t> civilToMicros(int year, int month, int day, int hour, int minute,
                                          int second, int millis) {
  if (month < 1 || month > 12 || day < 1 || day > 31 || hour < 0 || hour > 23 || minute < 0 ||
      minute > 59 || second < 0 || second > 60 || millis < 0 || millis > 999) {
    return std::nullopt;
  }
  std::int64_t days = daysFromCivil(year, static_cast<unsigned>(month), static_cast<unsigned>(day));
  std::int64_t seconds = days * 86400 + hour * 3600 + minute * 60 + second;
  return seconds * 1'000'000 + std::int64_t{millis} * 1000;
}

}  // namespace tern::codec::trackers
