#pragma once
// Server-side TLS settings (OpenSSL through Boost.Asio SSL): certificate chain and key, and
// optionally a CA whose client certificates are verified.
#include <memory>
#include <string>
#include <string_view>

namespace boost::asio::ssl {
class context;
}  // namespace boost::asio::ssl

typedef struct ssl_st SSL;  // NOLINT: OpenSSL's own declaration

namespace tern::net {

struct TlsServerOptions {
  std::string certFile;  // PEM: the server certificate, then any intermediates
  std::string keyFile;   // PEM: its private key
  // PEM: CAs whose client certificates are accepted. Empty: clients are not asked for one.
  std::string caFile;
  // With caFile: a client without a valid certificate fails the handshake. Without it, a client
  // may connect without a certificate, but one it shows must verify.
  bool requireClientCert = false;
};

// TLS 1.2 and later. Throws std::runtime_error naming `keyPrefix` ("mqtt.tls_cert: ...") and the
// file when a file cannot be read or the key does not match the certificate.
std::shared_ptr<boost::asio::ssl::context> makeTlsServerContext(const TlsServerOptions& options,
                                                                std::string_view keyPrefix);

// The CN of the peer's certificate after a handshake, when it showed one and it verified;
// empty otherwise (also for a CN holding a NUL byte).
std::string verifiedPeerCommonName(SSL* ssl);

}  // namespace tern::net
