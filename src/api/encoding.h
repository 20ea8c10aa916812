#pragma once
// Byte-level encodings the API needs: UTF-8 checks, base64 for binary payloads and the opaque
// pagination cursor.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace tern::api {

bool isValidUtf8(std::string_view text);
// Replaces every invalid UTF-8 sequence with U+FFFD, so the result can go into JSON.
std::string toValidUtf8(std::string_view text);

// RFC 4648 §4, with padding.
std::string base64Encode(std::string_view bytes);
// RFC 4648 §5 (URL and file name safe), without padding.
std::string base64UrlEncode(std::string_view bytes);
// Strict: rejects padding, foreign characters and non-canonical trailing bits.
std::optional<std::string> base64UrlDecode(std::string_view text);

// Percent-decodes one URL component; with plusIsSpace, '+' means ' ' (query strings).
// nullopt on a malformed escape.
std::optional<std::string> percentDecode(std::string_view text, bool plusIsSpace);

// Percent-encodes everything but RFC 3986 unreserved characters (for one path segment).
std::string percentEncode(std::string_view text);

// Quotes client input for an error detail: at most maxChars characters, valid UTF-8.
std::string quoteInput(std::string_view text, std::size_t maxChars = 64);

// Position of the last record of a page; the next page continues after it.
struct Cursor {
  std::int64_t timeUs = 0;
  std::int64_t id = 0;
};
std::string encodeCursor(const Cursor& cursor);
std::optional<Cursor> decodeCursor(std::string_view text);

}  // namespace tern::api
