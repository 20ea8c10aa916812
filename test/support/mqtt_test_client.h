#pragma once
// A blocking MQTT 3.1.1 / 5.0 client for tests, built on the codec. Every wait has a timeout so
// a broken broker fails a test instead of hanging it. The protocol version follows the CONNECT
// sent (protocolLevel 5: MQTT 5 packets both ways).
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "codec/mqtt/codec.h"
#include "codec/mqtt/packets.h"

namespace tern::test {

class MqttTestClient {
 public:
  MqttTestClient();
  ~MqttTestClient();

  // TCP connect only. Returns false on failure.
  bool open(std::uint16_t port, const std::string& host = "127.0.0.1");
  // TCP connect + CONNECT + wait for CONNACK. Returns the CONNACK (nullopt: none arrived).
  std::optional<codec::mqtt::Connack> connect(std::uint16_t port, codec::mqtt::Connect connect);
  std::optional<codec::mqtt::Connack> connect(std::uint16_t port, const std::string& clientId,
                                              bool cleanSession = true,
                                              std::uint16_t keepAlive = 60);
  // MQTT 5 CONNECT with clean start and the given properties.
  std::optional<codec::mqtt::Connack> connect5(std::uint16_t port, const std::string& clientId,
                                               codec::mqtt::Properties properties = {},
                                               bool cleanStart = true,
                                               std::uint16_t keepAlive = 60);
  codec::mqtt::ProtocolVersion version() const { return version_; }

  void send(const codec::mqtt::Packet& packet);
  void sendRaw(const std::string& bytes);

  // Next packet, or nullopt on timeout or closed connection (see closed()).
  std::optional<codec::mqtt::Packet> receive(
      std::chrono::milliseconds timeout = std::chrono::milliseconds(3000));
  // Receives until a packet of `type` arrives (others are kept for later receive() calls).
  std::optional<codec::mqtt::Packet> receiveType(
      codec::mqtt::PacketType type,
      std::chrono::milliseconds timeout = std::chrono::milliseconds(3000));
  // Waits for the next PUBLISH.
  std::optional<codec::mqtt::Publish> receivePublish(
      std::chrono::milliseconds timeout = std::chrono::milliseconds(3000));

  // SUBSCRIBE one filter and wait for SUBACK; returns the granted code (or nullopt).
  std::optional<std::uint8_t> subscribe(const std::string& filter, std::uint8_t qos);
  bool unsubscribe(const std::string& filter);
  // PUBLISH; for QoS 1 waits for PUBACK, for QoS 2 completes PUBREC/PUBREL/PUBCOMP. Returns
  // false when the acknowledgement did not come.
  bool publish(const std::string& topic, const std::string& payload, std::uint8_t qos = 0,
               bool retain = false);
  // SUBSCRIBE (any options/properties; a packet id is filled in) and wait for the SUBACK.
  std::optional<codec::mqtt::Suback> subscribe(codec::mqtt::Subscribe subscribe);
  // PUBLISH as given (a packet id is filled in for QoS > 0) and wait for its PUBACK / PUBREC
  // (QoS 2 then completes the flow). Returns the PUBACK/PUBREC, or nullopt.
  std::optional<codec::mqtt::Ack> publish(codec::mqtt::Publish publish);
  // Acknowledges a received PUBLISH as the standard requires for its QoS.
  void ack(const codec::mqtt::Publish& publish);
  void disconnect();
  // Closes the TCP connection without DISCONNECT (an abnormal disconnect).
  void drop();
  // True when the broker closed the connection within the timeout (reading until EOF).
  bool waitClosed(std::chrono::milliseconds timeout = std::chrono::milliseconds(3000));
  bool closed() const { return closed_; }
  std::uint16_t nextPacketId();

 private:
  bool fill(std::chrono::milliseconds timeout);

  boost::asio::io_context io_;
  boost::asio::ip::tcp::socket socket_;
  std::string buffer_;
  std::vector<codec::mqtt::Packet> stash_;
  bool closed_ = false;
  std::uint16_t packetId_ = 0;
  codec::mqtt::ProtocolVersion version_ = codec::mqtt::ProtocolVersion::kV311;
};

}  // namespace tern::test
