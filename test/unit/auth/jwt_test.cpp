#include "auth/jwt.h"

#include <gtest/gtest.h>

#include <string>

#include "auth/crypto.h"

namespace tern::auth {
namespace {

constexpr std::int64_t kNow = 1'767'225'600;  // 2026-01-01T00:00:00Z
const std::string kSecret = "0123456789abcdef0123456789abcdef";

AccessClaims claims() {
  AccessClaims c;
  c.subject = "alice";
  c.userId = 7;
  c.role = "operator";
  c.sessionId = "sess-1";
  c.issuedAt = kNow;
  c.expiresAt = kNow + 900;
  return c;
}

// Builds a token from raw header and payload JSON, signed with `secret`.
std::string craft(const std::string& header, const std::string& payload,
                  const std::string& secret = kSecret) {
  const std::string input = base64UrlEncode(header) + "." + base64UrlEncode(payload);
  return input + "." + base64UrlEncode(hmacSha256(secret, input));
}

const std::string kPayload =
    R"({"sub":"alice","uid":7,"role":"operator","sid":"sess-1","iat":1767225600,"exp":1767226500})";

TEST(JwtTest, Rfc7515HmacExampleSignatureMatches) {
  // RFC 7515 appendix A.1: our HMAC + base64url produce the published signature.
  const auto key = base64UrlDecode(
      "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow");
  ASSERT_TRUE(key.has_value());
  const std::string input =
      "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9."
      "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVl"
      "fQ";
  EXPECT_EQ(base64UrlEncode(hmacSha256(*key, input)),
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk");
  // Its claims are not ours (no sub/uid/...), but the signature checks out: malformed, not forged.
  const auto result = verifyJwt(input + ".dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk", *key, 0);
  EXPECT_FALSE(result.ok);
  EXPECT_EQ(result.error, JwtError::kMalformed);
}

TEST(JwtTest, SignedTokensVerifyWithTheirClaims) {
  const std::string token = signJwt(claims(), kSecret);
  const auto result = verifyJwt(token, kSecret, kNow + 10);
  ASSERT_TRUE(result.ok) << jwtErrorText(result.error);
  EXPECT_EQ(result.claims.subject, "alice");
  EXPECT_EQ(result.claims.userId, 7);
  EXPECT_EQ(result.claims.role, "operator");
  EXPECT_EQ(result.claims.sessionId, "sess-1");
  EXPECT_EQ(result.claims.expiresAt, kNow + 900);
  // The crafted equivalent verifies the same way.
  EXPECT_TRUE(verifyJwt(craft(R"({"alg":"HS256","typ":"JWT"})", kPayload), kSecret, kNow).ok);
}

TEST(JwtTest, ExpiresAtExp) {
  const std::string token = signJwt(claims(), kSecret);
  EXPECT_TRUE(verifyJwt(token, kSecret, kNow + 899).ok);
  const auto expired = verifyJwt(token, kSecret, kNow + 900);
  EXPECT_FALSE(expired.ok);
  EXPECT_EQ(expired.error, JwtError::kExpired);
}

TEST(JwtTest, RejectsAForgedSignature) {
  const std::string token = signJwt(claims(), kSecret);
  const auto other = verifyJwt(token, "another secret of thirty-two bytes!", kNow);
  EXPECT_EQ(other.error, JwtError::kBadSignature);
  // A changed payload with the old signature.
  const auto dot1 = token.find('.');
  const auto dot2 = token.rfind('.');
  const std::string tampered =
      token.substr(0, dot1 + 1) +
      base64UrlEncode(R"({"sub":"alice","uid":7,"role":"admin","sid":"sess-1","exp":9999999999})") +
      token.substr(dot2);
  const auto result = verifyJwt(tampered, kSecret, kNow);
  EXPECT_FALSE(result.ok);
  EXPECT_EQ(result.error, JwtError::kBadSignature);
  // A flipped signature character.
  std::string flipped = token;
  flipped.back() = flipped.back() == 'A' ? 'B' : 'A';
  EXPECT_FALSE(verifyJwt(flipped, kSecret, kNow).ok);
}

TEST(JwtTest, RejectsAlgNoneAndEveryOtherAlgorithm) {
  const std::string input =
      base64UrlEncode(R"({"alg":"none","typ":"JWT"})") + "." + base64UrlEncode(kPayload);
  for (const std::string& token : {input + ".", input}) {
    const auto result = verifyJwt(token, kSecret, kNow);
    EXPECT_FALSE(result.ok) << token;
  }
  EXPECT_EQ(verifyJwt(input + ".", kSecret, kNow).error, JwtError::kBadAlgorithm);
  // Even correctly HMAC-signed, another alg name is refused.
  for (const char* alg : {"none", "None", "HS512", "RS256", "hs256", ""}) {
    const auto result = verifyJwt(
        craft(std::string(R"({"typ":"JWT","alg":")") + alg + "\"}", kPayload), kSecret, kNow);
    EXPECT_EQ(result.error, JwtError::kBadAlgorithm) << alg;
  }
}

TEST(JwtTest, RejectsMalformedTokens) {
  const std::string good = signJwt(claims(), kSecret);
  for (const std::string& token :
       {std::string(), std::string("abc"), std::string("a.b"), std::string("a.b.c.d"), good + ".x",
        std::string(".."), "!!." + good.substr(good.find('.') + 1), craft("[1,2]", kPayload),
        craft(R"({"alg":"HS256","typ":"JWE"})", kPayload),
        craft(R"({"alg":"HS256","crit":["x"]})", kPayload), craft(R"({"alg":"HS256"})", "not json"),
        craft(R"({"alg":"HS256"})", R"({"sub":"alice","uid":"7","role":"x","sid":"s","exp":1})"),
        craft(R"({"alg":"HS256"})", R"({"sub":"alice","uid":7,"role":"x","sid":"s"})"),
        std::string(9000, 'a')}) {
    const auto result = verifyJwt(token, kSecret, kNow);
    EXPECT_FALSE(result.ok) << token;
    EXPECT_EQ(result.error, JwtError::kMalformed) << token;
  }
}

}  // namespace
}  // namespace tern::auth
