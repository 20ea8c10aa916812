#pragma once
// A throwaway PKI for TLS tests, made with the `openssl` CLI in a test's temp dir at run time
// (keys are never committed): a CA, a server certificate for localhost/127.0.0.1, a client
// certificate with CN "device-42" from that CA, and a second, unrelated CA with its own client.
#include <filesystem>
#include <string>

namespace tern::test {

struct TestPki {
  std::filesystem::path caCert;
  std::filesystem::path serverCert;
  std::filesystem::path serverKey;
  std::filesystem::path clientCert;  // CN = kClientCn, signed by caCert
  std::filesystem::path clientKey;
  std::filesystem::path otherCaCert;      // an unrelated CA
  std::filesystem::path otherClientCert;  // CN "intruder", signed by otherCaCert
  std::filesystem::path otherClientKey;
  static constexpr const char* kClientCn = "device-42";
};

// Writes the files into `dir`. Fails the calling test (ADD_FAILURE) and returns false when the
// openssl CLI fails.
bool makeTestPki(const std::filesystem::path& dir, TestPki& pki);

}  // namespace tern::test
