#include "auth/crypto.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

namespace tern::auth {
namespace {

TEST(Base64UrlTest, EncodesRfc4648Vectors) {
  // RFC 4648 §10, in the URL alphabet without padding.
  EXPECT_EQ(base64UrlEncode(""), "");
  EXPECT_EQ(base64UrlEncode("f"), "Zg");
  EXPECT_EQ(base64UrlEncode("fo"), "Zm8");
  EXPECT_EQ(base64UrlEncode("foo"), "Zm9v");
  EXPECT_EQ(base64UrlEncode("foob"), "Zm9vYg");
  EXPECT_EQ(base64UrlEncode("fooba"), "Zm9vYmE");
  EXPECT_EQ(base64UrlEncode("foobar"), "Zm9vYmFy");
  EXPECT_EQ(base64UrlEncode(std::string("\xfb\xff\xbf", 3)), "-_-_");
}

TEST(Base64UrlTest, DecodesWhatItEncodes) {
  std::string all;
  for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
  for (std::size_t n = 0; n <= all.size(); n += 7) {
    const std::string bytes = all.substr(0, n);
    const auto decoded = base64UrlDecode(base64UrlEncode(bytes));
    ASSERT_TRUE(decoded.has_value()) << n;
    EXPECT_EQ(*decoded, bytes);
  }
}

TEST(Base64UrlTest, RejectsAnythingNotCanonical) {
  for (const char* bad :
       {"Zg==", "Zm9v=", "Z", "Zm9vY", "Zm+v", "Zm/v", "Zm 9v", "Zh", "Zm9", "Zm9w!"}) {
    // "Zh" and "Zm9" have non-zero trailing bits ("fo" is only "Zm8"); the rest are not
    // base64url at all.
    EXPECT_FALSE(base64UrlDecode(bad).has_value()) << bad;
  }
}

TEST(CryptoTest, Sha256AndHmacMatchKnownVectors) {
  EXPECT_EQ(sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  // RFC 4231 test case 2.
  EXPECT_EQ(base64UrlEncode(hmacSha256("Jefe", "what do ya want for nothing?")),
            base64UrlEncode(std::string(
                "\x5b\xdc\xc1\x46\xbf\x60\x75\x4e\x6a\x04\x24\x26\x08\x95\x75\xc7\x5a\x00\x3f\x08"
                "\x9d\x27\x39\x83\x9d\xec\x58\xb9\x64\xec\x38\x43",
                32)));
}

TEST(CryptoTest, ConstantTimeEqualComparesContentAndLength) {
  EXPECT_TRUE(constantTimeEqual("abc", "abc"));
  EXPECT_FALSE(constantTimeEqual("abc", "abd"));
  EXPECT_FALSE(constantTimeEqual("abc", "abcd"));
  EXPECT_TRUE(constantTimeEqual("", ""));
}

TEST(CryptoTest, RandomTokensDiffer) {
  std::set<std::string> seen;
  for (int i = 0; i < 100; ++i) seen.insert(randomToken(32));
  EXPECT_EQ(seen.size(), 100u);
  EXPECT_EQ(randomToken(32).size(), 43u);
  EXPECT_EQ(generatePassword().size(), 20u);
}

TEST(PasswordTest, Argon2idHashesVerify) {
  const auto hash = hashPassword("correct horse");
  ASSERT_TRUE(hash.has_value());
  EXPECT_EQ(hash->rfind("$argon2id$", 0), 0u) << *hash;
  EXPECT_TRUE(verifyPassword("correct horse", *hash));
  EXPECT_FALSE(verifyPassword("correct horse ", *hash));
  EXPECT_FALSE(verifyPassword("", *hash));
  // Salted: the same password hashes differently each time.
  EXPECT_NE(*hashPassword("correct horse"), *hash);
  EXPECT_FALSE(verifyPassword("x", "not a hash"));
  EXPECT_FALSE(verifyPassword("x", ""));
}

}  // namespace
}  // namespace tern::auth
