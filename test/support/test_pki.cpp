#include "support/test_pki.h"

#include <gtest/gtest.h>

#include <fstream>
#include <initializer_list>
#include <string_view>

#include "support/test_server.h"

namespace tern::test {

namespace {

// EC keys: quick to generate, and every client in these tests speaks them.
constexpr const char* kNewKey = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";

bool run(const std::string& command) {
  std::string output;
  const int status = runCommand(command, &output);
  if (status != 0) {
    ADD_FAILURE() << "openssl failed (" << status << "): " << command << "\n" << output;
    return false;
  }
  return true;
}

// Joins command words; appending (rather than chains of operator+) also keeps GCC 12's
// -Wrestrict false positive away.
std::string words(std::initializer_list<std::string_view> parts) {
  std::string out;
  for (std::string_view part : parts) {
    if (!out.empty()) out += ' ';
    out += part;
  }
  return out;
}

std::string quoted(const std::filesystem::path& path) {
  std::string out = "'";
  out += path.string();
  out += "'";
  return out;
}

bool makeCa(const std::filesystem::path& dir, const std::string& name, const std::string& cn) {
  std::string subject = "'/CN=";
  subject += cn;
  subject += "'";
  return run(words({"openssl req -x509", kNewKey, "-keyout", quoted(dir / (name + ".key")), "-out",
                    quoted(dir / (name + ".pem")), "-days 2 -subj", subject,
                    "-addext basicConstraints=critical,CA:TRUE",
                    "-addext keyUsage=critical,keyCertSign,cRLSign"}));
}

bool makeLeaf(const std::filesystem::path& dir, const std::string& ca, const std::string& name,
              const std::string& cn, const std::string& extensions) {
  const auto ext = dir / (name + ".ext");
  std::ofstream(ext) << extensions << "\n";
  std::string subject = "'/CN=";
  subject += cn;
  subject += "'";
  return run(words({"openssl req", kNewKey, "-keyout", quoted(dir / (name + ".key")), "-out",
                    quoted(dir / (name + ".csr")), "-subj", subject})) &&
         run(words({"openssl x509 -req -in", quoted(dir / (name + ".csr")), "-CA",
                    quoted(dir / (ca + ".pem")), "-CAkey", quoted(dir / (ca + ".key")),
                    "-CAcreateserial -days 2 -out", quoted(dir / (name + ".pem")), "-extfile",
                    quoted(ext)}));
}

}  // namespace

bool makeTestPki(const std::filesystem::path& dir, TestPki& pki) {
  std::filesystem::create_directories(dir);
  const bool ok =
      makeCa(dir, "ca", "Tern Test CA") &&
      makeLeaf(dir, "ca", "server", "localhost",
               "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth") &&
      makeLeaf(dir, "ca", "client", TestPki::kClientCn, "extendedKeyUsage=clientAuth") &&
      makeCa(dir, "other-ca", "Some Other CA") &&
      makeLeaf(dir, "other-ca", "other-client", "intruder", "extendedKeyUsage=clientAuth");
  pki.caCert = dir / "ca.pem";
  pki.serverCert = dir / "server.pem";
  pki.serverKey = dir / "server.key";
  pki.clientCert = dir / "client.pem";
  pki.clientKey = dir / "client.key";
  pki.otherCaCert = dir / "other-ca.pem";
  pki.otherClientCert = dir / "other-client.pem";
  pki.otherClientKey = dir / "other-client.key";
  return ok;
}

}  // namespace tern::test
