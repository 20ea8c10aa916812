#pragma once
// Small helpers shared by tracker decoders: byte reading, checksums, hex, BCD, civil time.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace tern::codec::trackers {

// Bounds-checked big/little-endian reader over a frame. Reading past the end returns 0 and sets
// failed(), so a decoder can read a whole record and check once.
class ByteReader {
 public:
  explicit ByteReader(std::string_view data) : data_(data) {}
  std::uint8_t u8();
  std::uint16_t u16();  // big-endian
  std::uint32_t u32();
  std::uint64_t u64();
  std::uint16_t u16le();
  std::uint32_t u32le();
  std::int16_t i16() { return static_cast<std::int16_t>(u16()); }
  std::int32_t i32() { return static_cast<std::int32_t>(u32()); }
  std::string_view bytes(std::size_t n);
  void skip(std::size_t n);
  std::size_t remaining() const { return failed_ ? 0 : data_.size() - pos_; }
  std::size_t position() const { return pos_; }
  void seek(std::size_t pos);
  bool failed() const { return failed_; }

 private:
  std::string_view data_;
  std::size_t pos_ = 0;
  bool failed_ = false;
};

std::uint16_t crc16X25(std::string_view data);     // CRC-16/X-25 (GT06)
std::uint16_t crc16Arc(std::string_view data);     // CRC-16/ARC, a.k.a. IBM (Teltonika)
std::uint16_t crc16Kermit(std::string_view data);  // CRC-16/KERMIT (Ruptela)

std::string toHex(std::string_view bytes, bool upper = false);
// Decodes hex (either case, no separators); nullopt on odd length or a non-hex digit.
std::optional<std::string> fromHex(std::string_view hex);
// Packed BCD digits, e.g. 0x03 0x52 → "0352".
std::string bcdDigits(std::string_view bytes);

// Days since 1970-01-01 of a civil date (proleptic Gregorian).
std::int64_t daysFromCivil(std::int64_t year, unsigned month, unsigned day);
// UTC µs of a civil date-time; nullopt when a field is out of range.
std::optional<std::int64_t> civilToMicros(int year, int month, int day, int hour, int minute,
                                          int second, int millis = 0);

}  // namespace tern::codec::trackers
