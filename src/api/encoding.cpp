#include "api/encoding.h"

#include <array>
#include <cctype>

namespace tern::api {
namespace {

constexpr std::string_view kBase64Std =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr std::string_view kBase64Url =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";
// Leading version byte, so the cursor format can change without misreading old cursors.
constexpr unsigned char kCursorVersion = 1;
constexpr std::size_t kCursorBytes = 17;

unsigned char byteAt(std::string_view s, std::size_t i) {
  return static_cast<unsigned char>(s[i]);
}

// Length of the well-formed UTF-8 sequence starting at s[i] (RFC 3629 table), or 0.
std::size_t utf8SequenceLength(std::string_view s, std::size_t i) {
  const unsigned char b0 = byteAt(s, i);
  if (b0 < 0x80) return 1;
  std::size_t length = 0;
  unsigned char low = 0x80;
  unsigned char high = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    length = 2;
  } else if (b0 == 0xE0) {
    length = 3;
    low = 0xA0;  // no overlong forms
  } else if ((b0 >= 0xE1 && b0 <= 0xEC) || b0 == 0xEE || b0 == 0xEF) {
    length = 3;
  } else if (b0 == 0xED) {
    length = 3;
    high = 0x9F;  // no surrogates
  } else if (b0 == 0xF0) {
    length = 4;
    low = 0x90;
  } else if (b0 >= 0xF1 && b0 <= 0xF3) {
    length = 4;
  } else if (b0 == 0xF4) {
    length = 4;
    high = 0x8F;  // nothing above U+10FFFF
  } else {
    return 0;
  }
  if (i + length > s.size()) return 0;
  const unsigned char b1 = byteAt(s, i + 1);
  if (b1 < low || b1 > high) return 0;
  for (std::size_t k = 2; k < length; ++k) {
    const unsigned char b = byteAt(s, i + k);
    if (b < 0x80 || b > 0xBF) return 0;
  }
  return length;
}

std::string base64With(std::string_view alphabet, std::string_view bytes, bool pad) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const std::uint32_t n = (std::uint32_t{byteAt(bytes, i)} << 16) |
                            (std::uint32_t{byteAt(bytes, i + 1)} << 8) | byteAt(bytes, i + 2);
    out += alphabet[(n >> 18) & 63];
    out += alphabet[(n >> 12) & 63];
    out += alphabet[(n >> 6) & 63];
    out += alphabet[n & 63];
  }
  const std::size_t rest = bytes.size() - i;
  if (rest == 1) {
    const std::uint32_t n = std::uint32_t{byteAt(bytes, i)} << 16;
    out += alphabet[(n >> 18) & 63];
    out += alphabet[(n >> 12) & 63];
    if (pad) out += "==";
  } else if (rest == 2) {
    const std::uint32_t n =
        (std::uint32_t{byteAt(bytes, i)} << 16) | (std::uint32_t{byteAt(bytes, i + 1)} << 8);
    out += alphabet[(n >> 18) & 63];
    out += alphabet[(n >> 12) & 63];
    out += alphabet[(n >> 6) & 63];
    if (pad) out += '=';
  }
  return out;
}

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

void putBigEndian(std::string& out, std::int64_t value) {
  const auto u = static_cast<std::uint64_t>(value);
  for (int shift = 56; shift >= 0; shift -= 8) {
    out += static_cast<char>((u >> shift) & 0xFF);
  }
}

std::int64_t getBigEndian(std::string_view in, std::size_t offset) {
  std::uint64_t u = 0;
  for (std::size_t k = 0; k < 8; ++k) u = (u << 8) | byteAt(in, offset + k);
  return static_cast<std::int64_t>(u);
}

}  // namespace

bool isValidUtf8(std::string_view text) {
  for (std::size_t i = 0; i < text.size();) {
    const std::size_t n = utf8SequenceLength(text, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

std::string toValidUtf8(std::string_view text) {
  if (isValidUtf8(text)) return std::string(text);
  std::string out;
  out.reserve(text.size() + 8);
  for (std::size_t i = 0; i < text.size();) {
    const std::size_t n = utf8SequenceLength(text, i);
    if (n == 0) {
      out += kReplacementChar;
      ++i;
    } else {
      out.append(text.substr(i, n));
      i += n;
    }
  }
  return out;
}

std::string base64Encode(std::string_view bytes) {
  return base64With(kBase64Std, bytes, true);
}

std::string base64UrlEncode(std::string_view bytes) {
  return base64With(kBase64Url, bytes, false);
}

std::optional<std::string> base64UrlDecode(std::string_view text) {
  if (text.size() % 4 == 1) return std::nullopt;
  std::array<int, 256> lookup{};
  lookup.fill(-1);
  for (std::size_t k = 0; k < kBase64Url.size(); ++k) {
    lookup[static_cast<unsigned char>(kBase64Url[k])] = static_cast<int>(k);
  }
  std::string out;
  out.reserve(text.size() * 3 / 4);
  std::uint32_t acc = 0;
  int bits = 0;
  for (const char c : text) {
    const int v = lookup[static_cast<unsigned char>(c)];
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xFF);
    }
  }
  // Leftover bits must be zero, so each byte string has exactly one encoding.
  if ((acc & ((1U << bits) - 1)) != 0) return std::nullopt;
  return out;
}

std::string percentEncode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (std::isalnum(byte) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += c;
    } else {
      out += '%';
      out += kHex[byte >> 4];
      out += kHex[byte & 0x0F];
    }
  }
  return out;
}

std::optional<std::string> percentDecode(std::string_view text, bool plusIsSpace) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '%') {
      if (i + 2 >= text.size()) return std::nullopt;
      const int hi = hexValue(text[i + 1]);
      const int lo = hexValue(text[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else if (c == '+' && plusIsSpace) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

std::string quoteInput(std::string_view text, std::size_t maxChars) {
  std::string valid = toValidUtf8(text);
  // Cut at a character boundary: count lead bytes, not continuation bytes.
  std::size_t chars = 0;
  for (std::size_t i = 0; i < valid.size(); ++i) {
    if ((static_cast<unsigned char>(valid[i]) & 0xC0) != 0x80) {
      if (chars == maxChars) {
        valid.resize(i);
        valid += "...";
        break;
      }
      ++chars;
    }
  }
  return "'" + valid + "'";
}

std::string encodeCursor(const Cursor& cursor) {
  std::string raw;
  raw.reserve(kCursorBytes);
  raw += static_cast<char>(kCursorVersion);
  putBigEndian(raw, cursor.timeUs);
  putBigEndian(raw, cursor.id);
  return base64UrlEncode(raw);
}

std::optional<Cursor> decodeCursor(std::string_view text) {
  const auto raw = base64UrlDecode(text);
  if (!raw || raw->size() != kCursorBytes || byteAt(*raw, 0) != kCursorVersion) {
    return std::nullopt;
  }
  Cursor cursor{getBigEndian(*raw, 1), getBigEndian(*raw, 9)};
  if (cursor.id < 0) return std::nullopt;
  return cursor;
}

}  // namespace tern::api
