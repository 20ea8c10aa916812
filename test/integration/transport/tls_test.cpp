// MQTT over TLS against an in-process server, with Debian's mosquitto_pub / mosquitto_sub
// (--cafile, --cert/--key) and a throwaway PKI made by the openssl CLI at test time.
#include <gtest/gtest.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>
#include <future>
#include <thread>

#include "app/server.h"
#include "auth/device_credentials.h"
#include "broker/broker.h"
#include "storage/auth_store.h"
#include "support/mqtt_test_client.h"
#include "support/test_pki.h"
#include "support/test_server.h"

namespace tern::test {
namespace {

using namespace std::chrono_literals;
namespace asio = boost::asio;
namespace ssl = asio::ssl;

std::optional<broker::Broker::ClientIdentity> waitClient(TestServer& server,
                                                         const std::string& clientId) {
  for (int i = 0; i < 400; ++i) {
    if (auto identity = server.server().broker().clientIdentity(clientId)) return identity;
    std::this_thread::sleep_for(25ms);
  }
  return std::nullopt;
}

std::string q(const std::filesystem::path& path) {
  return "'" + path.string() + "'";
}

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(makeTestPki(pkiDir_.path(), pki_)); }

  void startServer(bool clientCa, bool requireClientCert = false, bool anonymous = true) {
    server_ = std::make_unique<TestServer>([&](core::Config& c) {
      c.mqtt.tlsCert = pki_.serverCert.string();
      c.mqtt.tlsKey = pki_.serverKey.string();
      c.mqtt.tlsListen = core::HostPort{"127.0.0.1", 0};
      if (clientCa) c.mqtt.tlsCa = pki_.caCert.string();
      c.mqtt.tlsRequireClientCert = requireClientCert;
      c.mqtt.allowAnonymous = anonymous;
      c.mqtt.loginMaxFailures = 0;
      c.mqtt.credentialCheckUs = 200'000;
    });
  }
  std::uint16_t tlsPort() const { return server_->server().broker().tlsPort(); }

  // mosquitto_* over TLS to the server, CA = ours unless given; extra args appended.
  std::string tlsArgs(const std::string& extra, const std::filesystem::path* ca = nullptr) const {
    return " -h 127.0.0.1 -p " + std::to_string(tlsPort()) + " --cafile " +
           q(ca != nullptr ? *ca : pki_.caCert) + " " + extra;
  }
  std::string clientCertArgs() const {
    return "--cert " + q(pki_.clientCert) + " --key " + q(pki_.clientKey);
  }
  int pub(const std::string& extra, std::string* output = nullptr,
          const std::filesystem::path* ca = nullptr) const {
    return runCommand("timeout 20 mosquitto_pub" + tlsArgs(extra, ca), output);
  }
  // mosquitto_sub for one message, in the background; the future yields its exit status and
  // output.
  std::future<std::pair<int, std::string>> subOne(const std::string& extra) const {
    const std::string command = "timeout 30 mosquitto_sub -C 1 -W 25" + tlsArgs(extra);
    return std::async(std::launch::async, [command] {
      std::string output;
      int status = runCommand(command, &output);
      return std::make_pair(status, output);
    });
  }

  // A blocking TLS client that trusts our CA, TCP-connected to the TLS port (no handshake yet).
  struct RawTlsClient {
    explicit RawTlsClient(const TestPki& pki) : context(ssl::context::tls_client) {
      context.set_verify_mode(ssl::verify_peer);
      context.load_verify_file(pki.caCert.string());
    }
    asio::io_context io;
    ssl::context context;
    ssl::stream<asio::ip::tcp::socket> stream{io, context};
  };
  std::unique_ptr<RawTlsClient> rawTlsClient(boost::system::error_code& ec) {
    auto client = std::make_unique<RawTlsClient>(pki_);
    client->stream.next_layer().connect({asio::ip::make_address("127.0.0.1"), tlsPort()}, ec);
    return client;
  }

  TempDir pkiDir_;
  TestPki pki_;
  std::unique_ptr<TestServer> server_;
};

TEST_F(TlsTest, MosquittoOverTlsMeetsTcpClientsAndStorage) {
  startServer(false);
  MqttTestClient tcp;
  ASSERT_TRUE(tcp.connect(server_->mqttPort(), "tcp-side"));
  ASSERT_TRUE(tcp.subscribe("device/#", 1));

  // TLS publisher → TCP subscriber and storage; mosquitto_pub exits 0 only after the PUBACK.
  std::string output;
  ASSERT_EQ(pub("-q 1 -i tls-pub -t device/tls-dev -m '{\"temp\":19.5}'", &output), 0) << output;
  auto received = tcp.receivePublish(5000ms);
  ASSERT_TRUE(received);
  EXPECT_EQ(received->topic, "device/tls-dev");
  EXPECT_EQ(received->payload, R"({"temp":19.5})");
  tcp.ack(*received);
  std::string api;
  runCommand("curl -s --max-time 10 " + server_->curlAuth("viewer") + " http://127.0.0.1:" +
                 std::to_string(server_->httpPort()) + "/api/v1/devices/tls-dev/messages",
             &api);
  EXPECT_NE(api.find("19.5"), std::string::npos) << api;

  // TCP publisher → TLS subscriber.
  auto sub = subOne("-q 1 -i tls-sub -t device/tcp-dev");
  auto identity = waitClient(*server_, "tls-sub");
  ASSERT_TRUE(identity);
  EXPECT_EQ(identity->transport, "tls");
  EXPECT_EQ(identity->certificateCn, "");
  // The SUBSCRIBE follows the CONNECT; give it the time to land by waiting for a retained copy.
  ASSERT_TRUE(tcp.publish("device/tcp-dev", R"({"temp":4})", 1, true));
  auto [status, text] = sub.get();
  EXPECT_EQ(status, 0) << text;
  EXPECT_EQ(text, "{\"temp\":4}\n");
}

TEST_F(TlsTest, ClientCertificateCnIsTheIdentity) {
  startServer(true);
  // With a certificate and no username: CN is the device id and stands as the username.
  auto withCert = subOne("-i cert-sub -t cn/one " + clientCertArgs());
  auto identity = waitClient(*server_, "cert-sub");
  ASSERT_TRUE(identity);
  EXPECT_EQ(identity->transport, "tls");
  EXPECT_EQ(identity->certificateCn, TestPki::kClientCn);
  EXPECT_EQ(identity->username, TestPki::kClientCn);

  // A username given in CONNECT stays the username; the CN is still known.
  auto named = subOne("-i cert-named -u someone -t cn/one " + clientCertArgs());
  identity = waitClient(*server_, "cert-named");
  ASSERT_TRUE(identity);
  EXPECT_EQ(identity->certificateCn, TestPki::kClientCn);
  EXPECT_EQ(identity->username, "someone");

  // Without a certificate (not required here): connected, no identity.
  auto anonymous = subOne("-i no-cert -t cn/one");
  identity = waitClient(*server_, "no-cert");
  ASSERT_TRUE(identity);
  EXPECT_EQ(identity->certificateCn, "");
  EXPECT_EQ(identity->username, "");

  MqttTestClient tcp;
  ASSERT_TRUE(tcp.connect(server_->mqttPort(), "release"));
  ASSERT_TRUE(tcp.publish("cn/one", "x", 0, true));
  for (auto* sub : {&withCert, &named, &anonymous}) {
    auto [status, text] = sub->get();
    EXPECT_EQ(status, 0) << text;
    EXPECT_EQ(text, "x\n");
  }
}

TEST_F(TlsTest, CertificateLoginsNeedARegisteredDeviceAndEndWithIt) {
  startServer(true, false, false);
  // What `tern device` does: its own connection to the database.
  auto cli = app::openAuthStore(server_->server().config());
  auth::DeviceCredentials devices(*cli);
  const std::string topic = std::string(" -t device/") + TestPki::kClientCn;
  std::string output;
  EXPECT_NE(pub("-q 1 -i cert-pub -m '{\"v\":1}'" + topic + " " + clientCertArgs(), &output), 0)
      << "a certificate of an unregistered device got in: " << output;

  ASSERT_TRUE(devices.addDevice(TestPki::kClientCn, "device-42-password").ok());
  EXPECT_EQ(pub("-q 1 -i cert-pub -m '{\"v\":2}'" + topic + " " + clientCertArgs(), &output), 0)
      << output;
  auto live = subOne("-q 1 -i cert-sub" + topic + "/never " + clientCertArgs());
  ASSERT_TRUE(waitClient(*server_, "cert-sub")) << "the subscriber did not connect";

  // Removing the device closes its live connection (well before mosquitto_sub's own 25 s
  // limit), and its reconnect is refused.
  ASSERT_TRUE(*devices.removeDevice(TestPki::kClientCn));
  bool closed = false;
  for (int i = 0; i < 300 && !closed; ++i) {
    closed = !server_->server().broker().clientIdentity("cert-sub");
    if (!closed) std::this_thread::sleep_for(25ms);
  }
  EXPECT_TRUE(closed) << "the removed device's connection stayed open";
  auto [status, text] = live.get();
  EXPECT_NE(status, 0) << text;
  EXPECT_NE(pub("-q 1 -i cert-pub -m '{\"v\":3}'" + topic + " " + clientCertArgs(), &output), 0)
      << output;
}

TEST_F(TlsTest, RequiredClientCertificate) {
  startServer(true, true);
  std::string output;
  EXPECT_NE(pub("-i no-cert -t t -m x", &output), 0) << "no certificate, yet published";
  const std::string rogue =
      "--cert " + q(pki_.otherClientCert) + " --key " + q(pki_.otherClientKey);
  EXPECT_NE(pub("-i rogue -t t -m x " + rogue, &output), 0) << "a certificate from another CA";
  EXPECT_EQ(pub("-q 1 -i good -t t -m x " + clientCertArgs(), &output), 0) << output;
}

TEST_F(TlsTest, HandshakeFailuresHarmNothingElse) {
  startServer(false);
  // A TLS subscriber and a TCP client, connected before the failures.
  auto sub = subOne("-i survivor -t survive/#");
  ASSERT_TRUE(waitClient(*server_, "survivor"));
  MqttTestClient tcp;
  ASSERT_TRUE(tcp.connect(server_->mqttPort(), "tcp-survivor"));

  // 1. A client that does not trust our CA gives up in the handshake.
  std::string output;
  EXPECT_NE(pub("-i distrust -t survive/x -m no", &output, &pki_.otherCaCert), 0);
  // 2. Plain MQTT to the TLS port: no CONNACK, the connection is closed.
  MqttTestClient plain;
  EXPECT_FALSE(plain.connect(tlsPort(), "plain-on-tls"));
  EXPECT_TRUE(plain.waitClosed(15000ms));
  // 3. Garbage.
  MqttTestClient garbage;
  ASSERT_TRUE(garbage.open(tlsPort()));
  garbage.sendRaw(std::string(64, '\x16') + "not tls at all");
  EXPECT_TRUE(garbage.waitClosed(15000ms));

  // Everyone else is fine, and new TLS clients still get in.
  ASSERT_TRUE(tcp.publish("survive/ok", "still here", 1, true));
  auto [status, text] = sub.get();
  EXPECT_EQ(status, 0) << text;
  EXPECT_EQ(text, "still here\n");
  EXPECT_EQ(pub("-q 1 -i after -t survive/after -m y", &output), 0) << output;
}

TEST_F(TlsTest, SilentClientIsClosedAfterTheHandshakeTimeout) {
  startServer(false);
  MqttTestClient silent;
  ASSERT_TRUE(silent.open(tlsPort()));
  // kHandshakeTimeout is 10 s; allow twice that.
  EXPECT_TRUE(silent.waitClosed(20000ms));
}

TEST_F(TlsTest, ProxyHeaderBeforeTheTlsHandshake) {
  server_ = std::make_unique<TestServer>([&](core::Config& c) {
    c.mqtt.tlsCert = pki_.serverCert.string();
    c.mqtt.tlsKey = pki_.serverKey.string();
    c.mqtt.tlsListen = core::HostPort{"127.0.0.1", 0};
    c.mqtt.proxyProtocol = true;
  });
  boost::system::error_code ec;
  auto client = rawTlsClient(ec);
  ASSERT_FALSE(ec) << ec.message();
  auto& stream = client->stream;
  asio::write(stream.next_layer(),
              asio::buffer(std::string("PROXY TCP4 203.0.113.9 127.0.0.1 40000 8883\r\n")), ec);
  ASSERT_FALSE(ec);
  // Blocking calls are bounded: the server closes a stuck handshake after 10 s.
  stream.handshake(ssl::stream_base::client, ec);
  ASSERT_FALSE(ec) << ec.message();
  std::string connect;
  codec::mqtt::Connect c;
  c.protocolName = "MQTT";
  c.protocolLevel = 4;
  c.clientId = "proxied-tls";
  c.keepAlive = 30;
  codec::mqtt::encode(c, connect);
  asio::write(stream, asio::buffer(connect), ec);
  ASSERT_FALSE(ec);
  char connack[4] = {};
  asio::read(stream, asio::buffer(connack), ec);
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_EQ(connack[0], '\x20');
  EXPECT_EQ(connack[3], '\x00');
  EXPECT_TRUE(waitClient(*server_, "proxied-tls"));
}

// The server ends a TLS connection with close_notify: the client reads a clean end of stream
// (EOF), not a truncation. Here after refusing a CONNECT of an unknown protocol level.
TEST_F(TlsTest, ServerClosesWithCloseNotify) {
  startServer(false);
  boost::system::error_code ec;
  auto client = rawTlsClient(ec);
  ASSERT_FALSE(ec) << ec.message();
  auto& stream = client->stream;
  // Blocking calls are bounded: the server closes a stuck connection within seconds.
  stream.handshake(ssl::stream_base::client, ec);
  ASSERT_FALSE(ec) << ec.message();
  codec::mqtt::Connect c;
  c.protocolName = "MQTT";
  c.protocolLevel = 9;  // refused with CONNACK 0x01, then closed
  c.clientId = "too-new";
  c.keepAlive = 30;
  std::string connect;
  codec::mqtt::encode(c, connect);
  asio::write(stream, asio::buffer(connect), ec);
  ASSERT_FALSE(ec) << ec.message();
  std::string received;
  char buffer[64];
  for (;;) {
    const std::size_t n = stream.read_some(asio::buffer(buffer), ec);
    if (ec) break;
    received.append(buffer, n);
  }
  ASSERT_GE(received.size(), 4u);
  EXPECT_EQ(received[0], '\x20');
  EXPECT_EQ(received[3], '\x01');
  EXPECT_EQ(ec, asio::error::eof) << "not a clean TLS close: " << ec.message();
  // Our side answers, as a polite client does (the server waits for it at most 5 s).
  stream.shutdown(ec);
}

TEST(TlsConfigTest, UnusableFilesStopTheServerNamingTheKey) {
  TempDir dir;
  std::string message;
  try {
    TestServer server([&](core::Config& c) {
      c.mqtt.tlsCert = (dir.path() / "missing.pem").string();
      c.mqtt.tlsKey = (dir.path() / "missing.key").string();
      c.mqtt.tlsListen = core::HostPort{"127.0.0.1", 0};
    });
  } catch (const std::exception& e) {
    message = e.what();
  }
  EXPECT_NE(message.find("mqtt.tls_cert"), std::string::npos) << message;
  EXPECT_NE(message.find("missing.pem"), std::string::npos) << message;
}

}  // namespace
}  // namespace tern::test
