#include "auth/jwt.h"

#include <boost/json.hpp>

#include "auth/crypto.h"

namespace tern::auth {
namespace {

namespace json = boost::json;

// Fixed, so every token we issue has the same header bytes.
constexpr std::string_view kHeader = R"({"alg":"HS256","typ":"JWT"})";
// Tokens are small; anything much longer is not ours and is not worth parsing.
constexpr std::size_t kMaxTokenBytes = 8192;

std::optional<json::object> decodeObject(std::string_view part) {
  const auto bytes = base64UrlDecode(part);
  if (!bytes) return std::nullopt;
  boost::system::error_code ec;
  json::value value = json::parse(*bytes, ec);
  if (ec || !value.is_object()) return std::nullopt;
  return std::move(value.as_object());
}

bool readString(const json::object& object, std::string_view key, std::string& out) {
  const auto* v = object.if_contains(key);
  if (v == nullptr || !v->is_string()) return false;
  out = std::string(v->as_string());
  return true;
}

bool readInt(const json::object& object, std::string_view key, std::int64_t& out) {
  const auto* v = object.if_contains(key);
  if (v == nullptr) return false;
  if (v->is_int64()) {
    out = v->as_int64();
    return true;
  }
  if (v->is_uint64() && v->as_uint64() <= static_cast<std::uint64_t>(INT64_MAX)) {
    out = static_cast<std::int64_t>(v->as_uint64());
    return true;
  }
  return false;
}

JwtResult failure(JwtError error) {
  JwtResult result;
  result.error = error;
  return result;
}

}  // namespace

std::string signJwt(const AccessClaims& claims, std::string_view secret) {
  json::object payload;
  payload["sub"] = claims.subject;
  payload["uid"] = claims.userId;
  payload["role"] = claims.role;
  payload["sid"] = claims.sessionId;
  payload["iat"] = claims.issuedAt;
  payload["exp"] = claims.expiresAt;
  std::string token = base64UrlEncode(kHeader);
  token += '.';
  token += base64UrlEncode(json::serialize(payload));
  const std::string signature = hmacSha256(secret, token);
  token += '.';
  token += base64UrlEncode(signature);
  return token;
}

JwtResult verifyJwt(std::string_view token, std::string_view secret, std::int64_t nowSeconds) {
  if (token.size() > kMaxTokenBytes) return failure(JwtError::kMalformed);
  const auto dot1 = token.find('.');
  if (dot1 == std::string_view::npos) return failure(JwtError::kMalformed);
  const auto dot2 = token.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos || token.find('.', dot2 + 1) != std::string_view::npos) {
    return failure(JwtError::kMalformed);
  }
  const auto header = decodeObject(token.substr(0, dot1));
  if (!header) return failure(JwtError::kMalformed);
  std::string alg;
  if (!readString(*header, "alg", alg)) return failure(JwtError::kMalformed);
  // The algorithm is ours to choose, never the token's: "none", "HS512", "RS256" are all out.
  if (alg != "HS256") return failure(JwtError::kBadAlgorithm);
  if (const auto* typ = header->if_contains("typ"); typ != nullptr && *typ != "JWT") {
    return failure(JwtError::kMalformed);
  }
  if (header->contains("crit")) return failure(JwtError::kMalformed);  // no extensions understood

  const auto signature = base64UrlDecode(token.substr(dot2 + 1));
  if (!signature) return failure(JwtError::kMalformed);
  const std::string expected = hmacSha256(secret, token.substr(0, dot2));
  if (!constantTimeEqual(*signature, expected)) return failure(JwtError::kBadSignature);

  const auto payload = decodeObject(token.substr(dot1 + 1, dot2 - dot1 - 1));
  if (!payload) return failure(JwtError::kMalformed);
  JwtResult result;
  AccessClaims& c = result.claims;
  if (!readString(*payload, "sub", c.subject) || !readInt(*payload, "uid", c.userId) ||
      !readString(*payload, "role", c.role) || !readString(*payload, "sid", c.sessionId) ||
      !readInt(*payload, "exp", c.expiresAt)) {
    return failure(JwtError::kMalformed);
  }
  readInt(*payload, "iat", c.issuedAt);
  if (nowSeconds >= c.expiresAt) return failure(JwtError::kExpired);
  if (std::int64_t nbf = 0; readInt(*payload, "nbf", nbf) && nowSeconds < nbf) {
    return failure(JwtError::kExpired);  // not yet valid: as unusable as expired
  }
  result.ok = true;
  return result;
}

std::string_view jwtErrorText(JwtError error) {
  switch (error) {
    case JwtError::kMalformed:
      return "malformed token";
    case JwtError::kBadAlgorithm:
      return "unsupported token algorithm (only HS256 is accepted)";
    case JwtError::kBadSignature:
      return "bad token signature";
    case JwtError::kExpired:
      return "token expired";
  }
  return "invalid token";
}

}  // namespace tern::auth
