#pragma once
// JSON Web Tokens (RFC 7519) signed with HS256 (RFC 7515), the only algorithm accepted: a token
// whose header names any other "alg" — "none" included — is rejected before its signature is
// looked at, so an attacker cannot pick the algorithm.
#include <cstdint>
#include <string>
#include <string_view>

#include "core/result.h"

namespace tern::auth {

struct AccessClaims {
  std::string subject;        // "sub": the user name
  std::int64_t userId = 0;    // "uid"
  std::string role;           // "role"
  std::string sessionId;      // "sid": the refresh-token family, so logout revokes the access token
  std::int64_t issuedAt = 0;  // "iat", seconds since the epoch
  std::int64_t expiresAt = 0;  // "exp", seconds since the epoch
};

// header.payload.signature, base64url without padding.
std::string signJwt(const AccessClaims& claims, std::string_view secret);

enum class JwtError { kMalformed, kBadAlgorithm, kBadSignature, kExpired };

struct JwtResult {
  bool ok = false;
  JwtError error = JwtError::kMalformed;
  AccessClaims claims;
};

// Checks the shape, the header (typ JWT or absent, alg HS256), the signature (constant time),
// then the claims; `nowSeconds` decides expiry ("exp" must be later than now).
JwtResult verifyJwt(std::string_view token, std::string_view secret, std::int64_t nowSeconds);

// For messages: "malformed", "unsupported algorithm", "bad signature", "expired".
std::string_view jwtErrorText(JwtError error);

}  // namespace tern::auth
