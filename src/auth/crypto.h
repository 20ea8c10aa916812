#pragma once
// The few cryptographic primitives auth needs: base64url, random secrets, SHA-256, HMAC-SHA256,
// constant-time comparison (OpenSSL) and argon2id password hashes (libsodium).
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace tern::auth {

// RFC 4648 §5 without padding, as JWTs use it.
std::string base64UrlEncode(std::string_view bytes);
// Strict: rejects '=', '+', '/', whitespace, impossible lengths and non-zero trailing bits, so
// every token has exactly one encoding.
std::optional<std::string> base64UrlDecode(std::string_view text);

// `bytes` bytes from the OS CSPRNG (libsodium's randombytes). Never fails.
std::string randomBytes(std::size_t bytes);
// A random token of `bytes` bytes, base64url-encoded.
std::string randomToken(std::size_t bytes = 32);

// SHA-256 as lower-case hex: how refresh tokens and API keys are stored (they are long random
// strings, so a fast hash is enough; passwords get argon2id).
std::string sha256Hex(std::string_view data);
// HMAC-SHA256(key, data), raw 32 bytes.
std::string hmacSha256(std::string_view key, std::string_view data);
// Compares in time that depends only on the lengths.
bool constantTimeEqual(std::string_view a, std::string_view b);

// argon2id (libsodium crypto_pwhash_str, interactive limits): the PHC string "$argon2id$...".
// Fails only when out of memory.
std::optional<std::string> hashPassword(std::string_view password);
// True when `password` matches `hash` (constant time inside libsodium). A malformed hash is
// false.
bool verifyPassword(std::string_view password, const std::string& hash);
// A random password for generated accounts: 20 characters of base64url (120 bits).
std::string generatePassword();

}  // namespace tern::auth
