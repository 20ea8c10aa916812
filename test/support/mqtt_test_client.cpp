#include "support/mqtt_test_client.h"

#include <poll.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/write.hpp>

namespace tern::test {

namespace mqtt = codec::mqtt;
using Clock = std::chrono::steady_clock;

MqttTestClient::MqttTestClient() : socket_(io_) {}
MqttTestClient::~MqttTestClient() {
  drop();
}

bool MqttTestClient::open(std::uint16_t port, const std::string& host) {
  boost::system::error_code ec;
  socket_.connect({boost::asio::ip::make_address(host), port}, ec);
  if (ec) return false;
  socket_.set_option(boost::asio::ip::tcp::no_delay(true), ec);
  closed_ = false;
  return true;
}

std::optional<mqtt::Connack> MqttTestClient::connect(std::uint16_t port, mqtt::Connect connect) {
  if (!socket_.is_open() && !open(port)) return std::nullopt;
  version_ = connect.protocolLevel == 5 ? mqtt::ProtocolVersion::kV5 : mqtt::ProtocolVersion::kV311;
  send(connect);
  auto packet = receiveType(mqtt::PacketType::kConnack);
  if (!packet) return std::nullopt;
  return std::get<mqtt::Connack>(*packet);
}

std::optional<mqtt::Connack> MqttTestClient::connect(std::uint16_t port,
                                                     const std::string& clientId, bool cleanSession,
                                                     std::uint16_t keepAlive) {
  mqtt::Connect c;
  c.protocolName = "MQTT";
  c.protocolLevel = 4;
  c.clientId = clientId;
  c.cleanSession = cleanSession;
  c.keepAlive = keepAlive;
  return connect(port, std::move(c));
}

std::optional<mqtt::Connack> MqttTestClient::connect5(std::uint16_t port,
                                                      const std::string& clientId,
                                                      mqtt::Properties properties, bool cleanStart,
                                                      std::uint16_t keepAlive) {
  mqtt::Connect c;
  c.protocolName = "MQTT";
  c.protocolLevel = 5;
  c.clientId = clientId;
  c.cleanSession = cleanStart;
  c.keepAlive = keepAlive;
  c.properties = std::move(properties);
  return connect(port, std::move(c));
}

void MqttTestClient::send(const mqtt::Packet& packet) {
  std::string bytes;
  mqtt::encode(packet, bytes, version_);
  sendRaw(bytes);
}

void MqttTestClient::sendRaw(const std::string& bytes) {
  boost::system::error_code ec;
  boost::asio::write(socket_, boost::asio::buffer(bytes), ec);
  if (ec) closed_ = true;
}

bool MqttTestClient::fill(std::chrono::milliseconds timeout) {
  if (closed_ || !socket_.is_open()) return false;
  pollfd pfd{socket_.native_handle(), POLLIN, 0};
  int ready = ::poll(&pfd, 1, static_cast<int>(timeout.count()));
  if (ready <= 0) return false;
  char chunk[65536];
  boost::system::error_code ec;
  std::size_t n = socket_.read_some(boost::asio::buffer(chunk), ec);
  if (ec || n == 0) {
    closed_ = true;
    return false;
  }
  buffer_.append(chunk, n);
  return true;
}

std::optional<mqtt::Packet> MqttTestClient::receive(std::chrono::milliseconds timeout) {
  if (!stash_.empty()) {
    mqtt::Packet p = std::move(stash_.front());
    stash_.erase(stash_.begin());
    return p;
  }
  auto deadline = Clock::now() + timeout;
  for (;;) {
    mqtt::Frame frame = mqtt::splitFrame(buffer_, 268435455);
    if (frame.status == mqtt::DecodeStatus::kOk) {
      mqtt::Packet packet;
      auto parsed = mqtt::parsePacket(frame.header, frame.body, packet, version_);
      buffer_.erase(0, frame.size);
      if (parsed.status != mqtt::DecodeStatus::kOk) return std::nullopt;
      return packet;
    }
    if (frame.status != mqtt::DecodeStatus::kNeedMore) return std::nullopt;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0 || !fill(left)) return std::nullopt;
  }
}

std::optional<mqtt::Packet> MqttTestClient::receiveType(mqtt::PacketType type,
                                                        std::chrono::milliseconds timeout) {
  for (std::size_t i = 0; i < stash_.size(); ++i) {
    if (mqtt::packetType(stash_[i]) == type) {
      mqtt::Packet p = std::move(stash_[i]);
      stash_.erase(stash_.begin() + static_cast<std::ptrdiff_t>(i));
      return p;
    }
  }
  auto deadline = Clock::now() + timeout;
  std::vector<mqtt::Packet> others;
  std::optional<mqtt::Packet> found;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) break;
    // Read straight from the wire (not the stash) so other packets keep their order.
    std::vector<mqtt::Packet> saved;
    saved.swap(stash_);
    auto packet = receive(left);
    stash_.swap(saved);
    if (!packet) break;
    if (mqtt::packetType(*packet) == type) {
      found = std::move(packet);
      break;
    }
    others.push_back(std::move(*packet));
  }
  for (auto& p : others) stash_.push_back(std::move(p));
  return found;
}

std::optional<mqtt::Publish> MqttTestClient::receivePublish(std::chrono::milliseconds timeout) {
  auto packet = receiveType(mqtt::PacketType::kPublish, timeout);
  if (!packet) return std::nullopt;
  return std::get<mqtt::Publish>(*packet);
}

std::uint16_t MqttTestClient::nextPacketId() {
  if (++packetId_ == 0) packetId_ = 1;
  return packetId_;
}

std::optional<std::uint8_t> MqttTestClient::subscribe(const std::string& filter, std::uint8_t qos) {
  mqtt::Subscribe s;
  s.packetId = nextPacketId();
  s.subscriptions.push_back({filter, qos});
  send(s);
  auto packet = receiveType(mqtt::PacketType::kSuback);
  if (!packet) return std::nullopt;
  const auto& suback = std::get<mqtt::Suback>(*packet);
  if (suback.packetId != s.packetId || suback.returnCodes.size() != 1) return std::nullopt;
  return suback.returnCodes[0];
}

bool MqttTestClient::unsubscribe(const std::string& filter) {
  mqtt::Unsubscribe u;
  u.packetId = nextPacketId();
  u.filters.push_back(filter);
  send(u);
  auto packet = receiveType(mqtt::PacketType::kUnsuback);
  return packet && std::get<mqtt::Unsuback>(*packet).packetId == u.packetId;
}

bool MqttTestClient::publish(const std::string& topic, const std::string& payload, std::uint8_t qos,
                             bool retain) {
  mqtt::Publish p;
  p.topic = topic;
  p.payload = payload;
  p.qos = qos;
  p.retain = retain;
  p.packetId = qos > 0 ? nextPacketId() : 0;
  send(p);
  if (qos == 0) return !closed_;
  if (qos == 1) {
    auto ack = receiveType(mqtt::PacketType::kPuback);
    return ack && std::get<mqtt::Ack>(*ack).packetId == p.packetId;
  }
  auto rec = receiveType(mqtt::PacketType::kPubrec);
  if (!rec || std::get<mqtt::Ack>(*rec).packetId != p.packetId) return false;
  send(mqtt::Ack{mqtt::PacketType::kPubrel, p.packetId});
  auto comp = receiveType(mqtt::PacketType::kPubcomp);
  return comp && std::get<mqtt::Ack>(*comp).packetId == p.packetId;
}

std::optional<mqtt::Suback> MqttTestClient::subscribe(mqtt::Subscribe subscribe) {
  subscribe.packetId = nextPacketId();
  send(subscribe);
  auto packet = receiveType(mqtt::PacketType::kSuback);
  if (!packet) return std::nullopt;
  auto suback = std::get<mqtt::Suback>(*packet);
  if (suback.packetId != subscribe.packetId) return std::nullopt;
  return suback;
}

std::optional<mqtt::Ack> MqttTestClient::publish(mqtt::Publish p) {
  if (p.qos > 0) p.packetId = nextPacketId();
  send(p);
  if (p.qos == 0) return std::nullopt;
  auto ack = receiveType(p.qos == 1 ? mqtt::PacketType::kPuback : mqtt::PacketType::kPubrec);
  if (!ack || std::get<mqtt::Ack>(*ack).packetId != p.packetId) return std::nullopt;
  if (p.qos == 2 && std::get<mqtt::Ack>(*ack).reasonCode < 0x80) {
    send(mqtt::Ack{mqtt::PacketType::kPubrel, p.packetId});
    if (!receiveType(mqtt::PacketType::kPubcomp)) return std::nullopt;
  }
  return std::get<mqtt::Ack>(*ack);
}

void MqttTestClient::ack(const mqtt::Publish& publish) {
  if (publish.qos == 1) send(mqtt::Ack{mqtt::PacketType::kPuback, publish.packetId});
  if (publish.qos == 2) {
    send(mqtt::Ack{mqtt::PacketType::kPubrec, publish.packetId});
    auto rel = receiveType(mqtt::PacketType::kPubrel);
    if (rel) send(mqtt::Ack{mqtt::PacketType::kPubcomp, publish.packetId});
  }
}

void MqttTestClient::disconnect() {
  send(mqtt::Disconnect{});
  drop();
}

void MqttTestClient::drop() {
  boost::system::error_code ec;
  if (socket_.is_open()) {
    socket_.shutdown(boost::asio::ip::tcp::socket::shutdown_both, ec);
    socket_.close(ec);
  }
  closed_ = true;
  buffer_.clear();
  stash_.clear();
}

bool MqttTestClient::waitClosed(std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (!closed_) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return false;
    if (!fill(left) && !closed_) return false;
  }
  return true;
}

}  // namespace tern::test
