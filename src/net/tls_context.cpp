#include "net/tls_context.h"

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <boost/asio/ssl/context.hpp>
#include <stdexcept>

namespace tern::net {

namespace ssl = boost::asio::ssl;

std::shared_ptr<ssl::context> makeTlsServerContext(const TlsServerOptions& options,
                                                   std::string_view keyPrefix) {
  auto context = std::make_shared<ssl::context>(ssl::context::tls_server);
  const std::string prefix(keyPrefix);
  auto load = [&](const char* key, const std::string& file, auto&& action) {
    boost::system::error_code ec;
    action(ec);
    if (ec) {
      throw std::runtime_error(prefix + key + ": cannot use " + file + ": " + ec.message());
    }
  };
  context->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                       ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 |
                       ssl::context::single_dh_use);
  SSL_CTX* native = context->native_handle();
  // OpenSSL frees its record buffers while a connection is idle: most devices are.
  SSL_CTX_set_mode(native, SSL_MODE_RELEASE_BUFFERS);
  load("tls_cert", options.certFile, [&](boost::system::error_code& ec) {
    context->use_certificate_chain_file(options.certFile, ec);
  });
  load("tls_key", options.keyFile, [&](boost::system::error_code& ec) {
    context->use_private_key_file(options.keyFile, ssl::context::pem, ec);
  });
  if (SSL_CTX_check_private_key(native) != 1) {
    throw std::runtime_error(prefix + "tls_key: " + options.keyFile +
                             " does not match the certificate in " + options.certFile);
  }
  if (!options.caFile.empty()) {
    load("tls_ca", options.caFile,
         [&](boost::system::error_code& ec) { context->load_verify_file(options.caFile, ec); });
    // Tell clients which CAs we accept, so they pick the right certificate.
    if (STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(options.caFile.c_str())) {
      SSL_CTX_set_client_CA_list(native, names);
    }
    context->set_verify_mode(ssl::verify_peer |
                             (options.requireClientCert ? ssl::verify_fail_if_no_peer_cert : 0));
    // Session resumption with client certificates needs a context id, else resumes fail.
    static constexpr unsigned char kSessionContext[] = "tern";
    SSL_CTX_set_session_id_context(native, kSessionContext, sizeof(kSessionContext) - 1);
  }
  return context;
}

std::string verifiedPeerCommonName(SSL* ssl) {
  if (ssl == nullptr || SSL_get_verify_result(ssl) != X509_V_OK) return {};
  X509* cert = SSL_get1_peer_certificate(ssl);
  if (cert == nullptr) return {};
  std::string cn;
  X509_NAME* subject = X509_get_subject_name(cert);
  const int index =
      subject == nullptr ? -1 : X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
  if (index >= 0) {
    ASN1_STRING* data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, index));
    unsigned char* utf8 = nullptr;
    const int length = ASN1_STRING_to_UTF8(&utf8, data);
    if (length > 0)
      cn.assign(reinterpret_cast<const char*>(utf8), static_cast<std::size_t>(length));
    OPENSSL_free(utf8);
  }
  X509_free(cert);
  if (cn.find('\0') != std::string::npos) cn.clear();
  return cn;
}

}  // namespace tern::net
