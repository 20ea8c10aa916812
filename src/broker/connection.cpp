#include "broker/connection.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>

#include "broker/broker.h"
#include "broker/session.h"
#include "broker/state_store.h"
#include "codec/mqtt/codec.h"
#include "core/ids.h"
#include "core/time.h"
#include "ingest/normalizer.h"
#include "ingest/pipeline.h"

namespace tern::broker {

namespace asio = boost::asio;
namespace mqtt = codec::mqtt;

namespace {
// "ip:port" or "[v6]:port" → the address alone (what failed logins are counted by).
std::string addressOf(const std::string& peer) {
  if (peer.starts_with('[')) {
    const std::size_t end = peer.find(']');
    return end == std::string::npos ? peer : peer.substr(1, end - 1);
  }
  const std::size_t colon = peer.rfind(':');
  return colon == std::string::npos ? peer : peer.substr(0, colon);
}

constexpr std::size_t kInitialReadBuffer = 4096;  // small: most connections are idle sensors
constexpr std::size_t kMaxReadChunk = 64 * 1024;
constexpr std::int64_t kConnectTimeoutUs = 10'000'000;
// How long a closed connection may take to get its last bytes out (or to finish a WebSocket
// goodbye) before its socket is closed anyway.
constexpr std::int64_t kCloseLingerUs = 5'000'000;
}  // namespace

Connection::Connection(Broker& broker, net::DeadlineWheel<Connection>& wheel,
                       net::ByteStream stream, std::string peer, std::string initialBytes,
                       std::string certificateCn)
    : broker_(broker),
      wheel_(wheel),
      stream_(std::move(stream)),
      peer_(std::move(peer)),
      inputUsed_(static_cast<std::uint32_t>(initialBytes.size())) {
  if (!initialBytes.empty()) io().input = std::move(initialBytes);
  if (!certificateCn.empty()) rare().certificateCn = std::move(certificateCn);
}

namespace {
const std::string kNone;
}  // namespace

const std::string& Connection::clientId() const {
  if (session_) return session_->clientId();
  return rare_ ? rare_->clientId : kNone;
}

const std::string& Connection::certificateCn() const {
  return rare_ ? rare_->certificateCn : kNone;
}

void Connection::Names::set(std::string_view username, std::string_view grant,
                            std::string_view identity) {
  // The views may point into text_: build the new text first.
  std::string text;
  text.reserve(username.size() + grant.size() + identity.size());
  text.append(username).append(grant).append(identity);
  text_ = std::move(text);
  usernameSize_ = static_cast<std::uint32_t>(username.size());
  grantSize_ = static_cast<std::uint32_t>(grant.size());
}

Connection::Rare& Connection::rare() {
  if (!rare_) rare_ = std::make_unique<Rare>();
  return *rare_;
}

void Connection::trimRare() {
  if (rare_ && rare_->empty()) rare_.reset();
}

Connection::~Connection() {
  // Normally cancelled by close(); not when the loop stopped with this connection open.
  wheel_.cancel(*this);
}

void Connection::start(net::FdPoller& poller) {
  if (stream_.plainTcp()) {
    // Readiness from the loop's poller; the socket is non-blocking with TCP_NODELAY already.
    if (peer_.empty()) peer_ = "?";
    if (const auto ec = stream_.plainSocket().attach(poller, *this, 0); ec) {
      close("cannot watch the socket: " + ec.message(), false, false);
      return;
    }
  } else {
    boost::system::error_code ec;
    auto& socket = stream_.transportSocket();
    if (peer_.empty()) {
      auto remote = socket.remote_endpoint(ec);
      peer_ = ec ? std::string("?")
                 : remote.address().to_string() + ":" + std::to_string(remote.port());
    }
    socket.set_option(asio::ip::tcp::no_delay(true), ec);
  }
  lastActivityUs_ = core::monotonicMicros();
  wheel_.schedule(*this, lastActivityUs_ + kConnectTimeoutUs);
  if (inputUsed_ > 0) {
    // Bytes that came with the PROXY header: the start of the protocol, handled as a read.
    processInput();
    if (state_ == State::kClosed) return;
    flush();
  }
  readMore();
}

namespace {
// One read buffer per event loop thread, for plain TCP connections with nothing buffered.
struct LoopReadBuffer {
  std::array<char, kMaxReadChunk> bytes;
  bool inUse = false;
};
thread_local LoopReadBuffer loopReadBuffer;
}  // namespace

void Connection::growInput() {
  std::string& input = io().input;
  if (input.size() - inputUsed_ < 1024) {
    std::size_t grown =
        std::max(kInitialReadBuffer, std::min(input.size() * 2, inputUsed_ + kMaxReadChunk));
    input.resize(std::max(grown, std::size_t{inputUsed_} + 1024));
  }
}

void Connection::readMore() {
  if (reading_ || paused_ || authPending_ || state_ == State::kClosed) return;
  if (stream_.plainTcp()) {
    // Wait for readability without a buffer when no partial packet is kept: idle connections
    // then hold no read memory.
    if (inputUsed_ == 0 && io_) std::string().swap(io_->input);
    reading_ = true;
    updateInterest();
    return;
  }
  growInput();
  reading_ = true;
  stream_.asyncReadSome(
      asio::buffer(io_->input.data() + inputUsed_, io_->input.size() - inputUsed_),
      [self = shared_from_this()](const boost::system::error_code& ec, std::size_t bytes) {
        self->onRead(ec, bytes);
      });
}

void Connection::onRead(const boost::system::error_code& ec, std::size_t bytes) {
  reading_ = false;
  if (state_ == State::kClosed) return;
  if (ec) {
    if (ec.category() == net::streamErrorCategory()) {
      close(ec.message(), true, true);  // a transport-level protocol error (a text frame)
    } else {
      close(ec == asio::error::eof ? "connection closed by client without DISCONNECT"
                                   : "connection lost: " + ec.message(),
            false, true);
    }
    return;
  }
  inputUsed_ += static_cast<std::uint32_t>(bytes);
  lastActivityUs_ = core::monotonicMicros();
  processInput();
  afterInput();
}

void Connection::onReadable() {
  reading_ = false;
  if (state_ == State::kClosed) return;
  net::RawSocket& socket = stream_.plainSocket();
  std::size_t n = 0;
  LoopReadBuffer& buffer = loopReadBuffer;
  if (inputUsed_ > 0 || buffer.inUse) {
    // The rest of a kept partial packet goes after it. (The loop's buffer in use is not
    // expected, handlers do not nest, but it is never shared.)
    growInput();
    const auto ec = socket.readSome(
        asio::buffer(io_->input.data() + inputUsed_, io_->input.size() - inputUsed_), n);
    if (ec == asio::error::would_block) {
      readMore();  // a spurious wake-up
      return;
    }
    onRead(ec, n);
    return;
  }
  const auto ec = socket.readSome(asio::buffer(buffer.bytes), n);
  if (ec == asio::error::would_block) {
    readMore();
    return;
  }
  if (ec) {
    onRead(ec, 0);
    return;
  }
  lastActivityUs_ = core::monotonicMicros();
  buffer.inUse = true;
  const std::string_view data(buffer.bytes.data(), n);
  const std::size_t used = handleBytes(data);
  if (state_ != State::kClosed && used < n) {
    // The start of a packet: keep it until the rest comes.
    io().input.assign(data.substr(used));
    inputUsed_ = static_cast<std::uint32_t>(io().input.size());
  }
  buffer.inUse = false;
  afterInput();
}

void Connection::onFdReady(std::uint32_t ready) {
  // Closing drops the broker's reference: stay alive until this returns.
  const std::shared_ptr<Connection> self = shared_from_this();
  if ((ready & net::FdPoller::kWrite) != 0 && writeInProgress_) {
    writeInProgress_ = false;
    if (writePlain()) onWritten({});
  }
  if ((ready & net::FdPoller::kRead) != 0 && reading_) {
    onReadable();
  } else if ((ready & net::FdPoller::kHangup) != 0 && !reading_ && !writeInProgress_) {
    // Reset while paused or waiting for the authenticator: nothing more can be read or sent.
    if (state_ != State::kClosed) close("connection lost", false, true);
    stream_.close();
  }
  std::shared_ptr<Connection> hold;
  if (state_ == State::kClosed && !writeInProgress_) hold = dropLingerHold();
  updateInterest();
  trimIo();
}

Connection::Io& Connection::io() {
  if (!io_) io_ = std::make_unique<Io>();
  return *io_;
}

void Connection::trimIo() {
  // Plain TCP reads into the loop's buffer: with no partial packet kept and nothing to send,
  // the block holds nothing worth keeping. (Other transports read into it all the time.)
  if (io_ && stream_.plainTcp() && !writeInProgress_ && inputUsed_ == 0 && io_->outbox.empty()) {
    io_.reset();
  }
}

void Connection::onPollerGone() {
  if (!stream_.plainTcp()) return;
  stream_.plainSocket().forgetPoller();
  stream_.close();
  const std::shared_ptr<Connection> hold = dropLingerHold();
}

void Connection::updateInterest() {
  if (!stream_.plainTcp()) return;
  stream_.plainSocket().want((reading_ ? net::FdPoller::kRead : 0u) |
                             (writeInProgress_ ? net::FdPoller::kWrite : 0u));
}

std::shared_ptr<Connection> Connection::dropLingerHold() {
  if (!rare_ || !rare_->lingerHold) return nullptr;
  std::shared_ptr<Connection> hold = std::move(rare_->lingerHold);
  trimRare();
  return hold;
}

void Connection::afterInput() {
  if (state_ == State::kClosed) return;
  flush();
  ingest::Pipeline* pipeline = broker_.pipeline();
  if (pipeline != nullptr && pipeline->overloaded()) {
    // Back-pressure: the writer is behind, so stop reading this socket until it drains. TCP flow
    // control then slows the publisher down; nothing is dropped and memory stays bounded.
    paused_ = true;
    broker_.countReadPause();
    pipeline->onDrain([weak = weak_from_this()] {
      if (auto self = weak.lock()) {
        asio::post(self->executor(), [self] { self->resumeReading(); });
      }
    });
    return;
  }
  if (StateStore* state = broker_.stateStore(); state != nullptr && state->overloaded()) {
    // The same for the broker state store (copies for persistent sessions, retained updates).
    paused_ = true;
    broker_.countReadPause();
    state->onDrain([weak = weak_from_this()] {
      if (auto self = weak.lock()) {
        asio::post(self->executor(), [self] { self->resumeReading(); });
      }
    });
    return;
  }
  readMore();
}

void Connection::resumeReading() {
  paused_ = false;
  readMore();
}

void Connection::processInput() {
  if (inputUsed_ == 0) return;
  const std::size_t offset = handleBytes(std::string_view(io().input.data(), inputUsed_));
  if (offset > 0 && state_ != State::kClosed) {
    std::memmove(io_->input.data(), io_->input.data() + offset, inputUsed_ - offset);
    inputUsed_ -= static_cast<std::uint32_t>(offset);
  }
  // A burst of large packets grew the buffer; give the memory back once it is idle.
  if (inputUsed_ == 0 && io_ && io_->input.size() > 4 * kMaxReadChunk) {
    io_->input.resize(kInitialReadBuffer);
    io_->input.shrink_to_fit();
  }
}

std::size_t Connection::handleBytes(std::string_view data) {
  std::size_t offset = 0;
  const std::uint32_t maxPacket = broker_.config().maxPacketSize;
  while (state_ != State::kClosed && !authPending_ && offset < data.size()) {
    std::string_view available = data.substr(offset);
    mqtt::Frame frame = mqtt::splitFrame(available, maxPacket);
    if (frame.status == mqtt::DecodeStatus::kNeedMore) break;
    if (frame.status != mqtt::DecodeStatus::kOk) {
      close(frame.error != nullptr ? frame.error : "malformed packet", true, true,
            frame.reasonCode);
      return offset;
    }
    mqtt::Packet packet;
    mqtt::ParseResult parsed = mqtt::parsePacket(frame.header, frame.body, packet, version_);
    if (parsed.status != mqtt::DecodeStatus::kOk) {
      close(parsed.error != nullptr ? parsed.error : "malformed packet", true, true,
            parsed.reasonCode);
      return offset;
    }
    offset += frame.size;
    if (!handlePacket(packet)) return offset;
  }
  return offset;
}

bool Connection::handlePacket(mqtt::Packet& packet) {
  mqtt::PacketType type = mqtt::packetType(packet);
  if (state_ == State::kAwaitConnect && type != mqtt::PacketType::kConnect) {
    close(std::string("first packet was ") + mqtt::packetTypeName(type) + ", not CONNECT", true,
          false);
    return false;
  }
  switch (type) {
    case mqtt::PacketType::kConnect:
      return handleConnect(std::get<mqtt::Connect>(packet));
    case mqtt::PacketType::kPublish:
      return handlePublish(std::get<mqtt::Publish>(packet));
    case mqtt::PacketType::kPuback:
    case mqtt::PacketType::kPubrec:
    case mqtt::PacketType::kPubrel:
    case mqtt::PacketType::kPubcomp:
      return handleAck(std::get<mqtt::Ack>(packet));
    case mqtt::PacketType::kSubscribe:
      return handleSubscribe(std::get<mqtt::Subscribe>(packet));
    case mqtt::PacketType::kUnsubscribe:
      return handleUnsubscribe(std::get<mqtt::Unsubscribe>(packet));
    case mqtt::PacketType::kPingreq:
      mqtt::encodeEmpty(mqtt::PacketType::kPingresp, io().outbox);
      return true;
    case mqtt::PacketType::kDisconnect:
      return handleDisconnect(std::get<mqtt::Disconnect>(packet));
    case mqtt::PacketType::kAuth:
      // No authentication method was accepted at CONNECT (any is refused there), so there is no
      // exchange an AUTH could belong to.
      close("AUTH without an authentication exchange", true, true, mqtt::reason::kProtocolError);
      return false;
    default:
      close(std::string("client sent a server-only packet: ") + mqtt::packetTypeName(type), true,
            true, mqtt::reason::kProtocolError);
      return false;
  }
}

bool Connection::handleConnect(mqtt::Connect& connect) {
  if (state_ != State::kAwaitConnect) {
    close("second CONNECT on one connection", true, true, mqtt::reason::kProtocolError);
    return false;
  }
  bool known = (connect.protocolLevel == 4 && connect.protocolName == "MQTT") ||
               (connect.protocolLevel == 5 && connect.protocolName == "MQTT") ||
               (connect.protocolLevel == 3 && connect.protocolName == "MQIsdp");
  if (!known) {
    if (connect.protocolName == "MQTT" || connect.protocolName == "MQIsdp") {
      // Right protocol, unsupported level: the standard wants CONNACK 0x01, then close.
      mqtt::encodeConnack(false, mqtt::ConnackCode::kUnacceptableProtocolVersion, io().outbox);
      close("unsupported protocol level " + std::to_string(connect.protocolLevel), true, false);
    } else {
      close("unknown protocol name '" + connect.protocolName + "'", true, false);
    }
    return false;
  }
  if (connect.protocolLevel == 5) version_ = mqtt::ProtocolVersion::kV5;
  const mqtt::Properties& props = connect.properties;
  if (v5() && props.authenticationMethod) {
    // Enhanced authentication is not offered; the standard's answer to any method is 0x8C.
    return refuseConnect(mqtt::ConnackCode::kBadAuthenticationMethod,
                         "unsupported authentication method '" + *props.authenticationMethod + "'");
  }
  bool assignedId = false;
  if (connect.clientId.empty() && v5()) {
    // MQTT 5 assigns an identifier whatever clean start says, and tells the client.
    connect.clientId = "auto-" + core::randomUuid();
    assignedId = true;
  }
  if (connect.clientId.empty()) {
    if (!connect.cleanSession) {
      rare().clientId = "(empty)";
      mqtt::encodeConnack(false, mqtt::ConnackCode::kIdentifierRejected, io().outbox);
      close("empty client id requires clean session", true, false);
      return false;
    }
    connect.clientId = "auto-" + core::randomUuid();
  }
  rare().clientId = connect.clientId;
  if (Authenticator* authenticator = broker_.authenticator()) {
    ConnectInfo info{clientId(),      connect.username, connect.password,
                     certificateCn(), addressOf(peer_), std::string(transportName())};
    authPending_ = true;
    assignedId_ = assignedId;
    rare().pendingConnect = std::make_unique<mqtt::Connect>(std::move(connect));
    // The answer may come from another thread: back to this loop. The handler keeps the
    // connection alive until then.
    authenticator->authenticate(
        std::move(info), [self = shared_from_this()](AuthDecision decision) mutable {
          auto executor = self->executor();
          asio::post(executor, [self = std::move(self), d = std::move(decision)]() mutable {
            self->onAuthenticated(std::move(d));
          });
        });
    return true;
  }
  return finishConnect(connect, assignedId);
}

void Connection::onAuthenticated(AuthDecision decision) {
  authPending_ = false;
  if (state_ == State::kClosed) {
    if (!decision.grant.empty()) broker_.authenticator()->release(decision.grant);
    return;
  }
  if (decision.outcome != AuthDecision::Outcome::kAllowed) {
    refuseAuthentication(decision);
    return;
  }
  names_.set(names_.username(), decision.grant,
             decision.identity.empty() ? std::string_view("(anonymous)") : decision.identity);
  if (!decision.allowAll) acl_ = std::make_shared<const TopicAcl>(std::move(decision.rules));
  mqtt::Connect connect = std::move(*rare().pendingConnect);
  rare_->pendingConnect.reset();
  if (!finishConnect(connect, assignedId_)) return;
  // Packets that came behind the CONNECT waited in the buffer.
  processInput();
  if (state_ == State::kClosed) return;
  flush();
  readMore();
}

void Connection::refuseAuthentication(const AuthDecision& decision) {
  using Outcome = AuthDecision::Outcome;
  mqtt::ConnackCode code = mqtt::ConnackCode::kNotAuthorized;
  switch (decision.outcome) {
    case Outcome::kBadCredentials:
      code = v5() ? mqtt::ConnackCode::kBadUserNameOrPassword5
                  : mqtt::ConnackCode::kBadUsernameOrPassword;
      break;
    case Outcome::kRateLimited:
      code =
          v5() ? mqtt::ConnackCode::kConnectionRateExceeded : mqtt::ConnackCode::kServerUnavailable;
      break;
    case Outcome::kUnavailable:
      code = v5() ? mqtt::ConnackCode::kServerUnavailable5 : mqtt::ConnackCode::kServerUnavailable;
      break;
    default:
      code = v5() ? mqtt::ConnackCode::kNotAuthorized5 : mqtt::ConnackCode::kNotAuthorized;
      break;
  }
  if (v5()) {
    mqtt::encodeConnack5(mqtt::Connack{.returnCode = code}, io().outbox);
  } else {
    mqtt::encodeConnack(false, code, io().outbox);
  }
  const std::string& who = decision.identity;
  if (decision.outcome == Outcome::kRateLimited) {
    spdlog::info("mqtt: refused client '{}' ({}) as '{}': {}", clientId(), peer_, who,
                 decision.reason);
  } else {
    spdlog::warn("mqtt: refused client '{}' ({}) as '{}': {}", clientId(), peer_, who,
                 decision.reason);
  }
  if (rare_) rare_->pendingConnect.reset();
  close(decision.reason, false, false);
}

void Connection::closeIfRevoked(const std::vector<std::string>& revoked) {
  if (grant().empty() || state_ != State::kConnected) return;
  if (std::find(revoked.begin(), revoked.end(), grant()) == revoked.end()) return;
  spdlog::warn("mqtt: closing client '{}' ({}) of '{}': its credentials were revoked", clientId(),
               peer_, names_.identity());
  if (v5()) {
    // With a reason string: it says why, and some clients (paho 1.6) only read the reason code
    // of a DISCONNECT that has properties.
    mqtt::Properties properties;
    properties.reasonString = "credentials revoked";
    mqtt::encodeDisconnect5(mqtt::reason::kNotAuthorized, &properties, io().outbox);
  }
  close("credentials revoked", false, false);
}

void Connection::dropForbiddenSubscriptions() {
  // The session may have been made by another login with the same client id (or under rules
  // since narrowed): it keeps only what this identity could subscribe to itself.
  for (const auto& [filter, options] : session_->subscriptions()) {
    if (acl_->maySubscribe(filter)) continue;
    broker_.unsubscribe(session_, filter);
    spdlog::warn(
        "mqtt: client '{}' ({}) of '{}' may not subscribe to '{}'; removed from its "
        "resumed session",
        clientId(), peer_, names_.identity(), filter);
  }
}

bool Connection::finishConnect(mqtt::Connect& connect, bool assignedId) {
  const mqtt::Properties& props = connect.properties;
  names_.set(connect.username ? std::string_view(*connect.username) : certificateCn(),
             names_.grant(), names_.identity());
  keepAlive_ = connect.keepAlive;
  const core::MqttConfig& config = broker_.config();
  if (v5() && config.serverKeepAlive > 0)
    keepAlive_ = static_cast<std::uint16_t>(config.serverKeepAlive);
  if (connect.will) will_ = std::make_unique<mqtt::Will>(std::move(*connect.will));
  if (will_ && acl_ && !acl_->mayPublish(will_->topic)) {
    // Kept out rather than refusing the client: the will is the only thing wrong.
    spdlog::warn("mqtt: client '{}' ({}) of '{}' may not publish its will on '{}'; dropped",
                 clientId(), peer_, names_.identity(), will_->topic);
    will_.reset();
  }
  state_ = State::kConnected;
  counted_ = true;
  broker_.countConnected(1);

  // 3.1.1: clean_session=false keeps the session forever; MQTT 5: as the client asks.
  std::uint32_t expiry = connect.cleanSession ? 0 : kSessionNeverExpires;
  if (v5()) expiry = props.sessionExpiryInterval.value_or(0);
  sessionExpiry_ = expiry;
  bool sessionPresent = false;
  session_ = broker_.openSession(rare().clientId, connect.cleanSession, expiry, shared_from_this(),
                                 sessionPresent);
  // The session keeps the client id from here on: one copy per client, not two.
  std::string().swap(rare_->clientId);
  trimRare();
  if (sessionPresent && acl_) dropForbiddenSubscriptions();
  ClientParams params;
  params.version = version_;
  params.acl = acl_;
  if (v5()) {
    mqtt::Connack connack{.sessionPresent = sessionPresent};
    mqtt::Properties& out = connack.properties;
    if (assignedId) out.assignedClientIdentifier = clientId();
    if (config.serverKeepAlive > 0) out.serverKeepAlive = keepAlive_;
    out.receiveMaximum = static_cast<std::uint16_t>(config.receiveMaximum);
    out.maximumPacketSize = config.maxPacketSize;
    out.topicAliasMaximum = static_cast<std::uint16_t>(config.topicAliasMaximum);
    out.retainAvailable = 1;
    out.wildcardSubscriptionAvailable = 1;
    out.subscriptionIdentifierAvailable = 1;
    out.sharedSubscriptionAvailable = 1;
    mqtt::encodeConnack5(connack, io().outbox);
    params.receiveMaximum = props.receiveMaximum.value_or(65535);
    params.maximumPacketSize = props.maximumPacketSize.value_or(0);
    params.topicAliasMaximum = props.topicAliasMaximum.value_or(0);
  } else {
    mqtt::encodeConnack(sessionPresent, mqtt::ConnackCode::kAccepted, io().outbox);
  }
  session_->attach(shared_from_this(), params);
  spdlog::debug("mqtt: client '{}' connected from {} (MQTT {}, clean={}, keepalive={}s)",
                clientId(), peer_, v5() ? "5.0" : "3.1.1", connect.cleanSession, keepAlive_);
  armKeepalive();
  return true;
}

bool Connection::refuseConnect(mqtt::ConnackCode code, std::string_view reason) {
  mqtt::Connack connack{.returnCode = code};
  mqtt::encodeConnack5(connack, io().outbox);
  close(reason, true, false);
  return false;
}

bool Connection::resolveTopicAlias(mqtt::Publish& publish) {
  if (!publish.properties.topicAlias) return true;
  const std::uint16_t alias = *publish.properties.topicAlias;
  if (alias > broker_.config().topicAliasMaximum) {
    close("topic alias " + std::to_string(alias) + " above the maximum", true, true,
          mqtt::reason::kTopicAliasInvalid);
    return false;
  }
  const std::size_t index = alias - 1u;  // the parser refuses alias 0
  if (publish.topic.empty()) {
    if (!rare_ || index >= rare_->topicAliasesIn.size() || rare_->topicAliasesIn[index].empty()) {
      close("PUBLISH with an unknown topic alias", true, true, mqtt::reason::kProtocolError);
      return false;
    }
    publish.topic = rare_->topicAliasesIn[index];
  } else {
    std::vector<std::string>& aliases = rare().topicAliasesIn;
    if (index >= aliases.size()) aliases.resize(index + 1);
    aliases[index] = publish.topic;
  }
  publish.properties.topicAlias.reset();
  return true;
}

bool Connection::handleDisconnect(const mqtt::Disconnect& disconnect) {
  if (v5()) {
    if (const auto& expiry = disconnect.properties.sessionExpiryInterval) {
      // [MQTT-3.14.2-2]: a session that was to end with the connection cannot be extended here.
      if (sessionExpiry_ == 0 && *expiry != 0) {
        close("DISCONNECT sets a session expiry after CONNECT set 0", true, true,
              mqtt::reason::kProtocolError);
        return false;
      }
      sessionExpiry_ = *expiry;
      session_->setExpiryInterval(*expiry);
    }
    if (disconnect.reasonCode == mqtt::reason::kDisconnectWithWill) {
      close("client disconnected with will message", false, true);
      return false;
    }
  }
  will_.reset();  // a normal DISCONNECT discards the will
  close("client disconnected", false, false);
  return false;
}

bool Connection::handlePublish(mqtt::Publish& publish) {
  broker_.countReceived();
  const std::uint8_t qos = publish.qos;
  const std::uint16_t packetId = publish.packetId;
  if (v5()) {
    if (!publish.properties.subscriptionIdentifiers.empty()) {
      // [MQTT-3.3.4-6]: only the server puts subscription identifiers in a PUBLISH.
      close("PUBLISH from a client carries a subscription identifier", true, true,
            mqtt::reason::kProtocolError);
      return false;
    }
    if (!resolveTopicAlias(publish)) return false;
  }
  if (acl_ && !acl_->mayPublish(publish.topic)) return denyPublish(publish);
  if (qos == 2 && !session_->beginIncomingQos2(packetId)) {
    // A resend of a QoS 2 message we already have: do not route it twice. Answer PUBREC once
    // the first copy is committed; until then the first copy's PUBREC is still coming.
    if (session_->incomingQos2Committed(packetId)) {
      queueAck(mqtt::PacketType::kPubrec, packetId, true);
    }
    return true;
  }
  if (qos > 0 && v5() && ++inboundInflight_ > broker_.config().receiveMaximum) {
    // [MQTT-3.3.4-9]: more unacknowledged QoS 1/2 publishes than the CONNACK allowed.
    close("receive maximum exceeded", true, true, mqtt::reason::kReceiveMaximumExceeded);
    return false;
  }

  // Clients may not inject $SYS data; the message is acknowledged and dropped.
  bool routable = !publish.topic.starts_with("$SYS");
  std::optional<storage::Record> record;
  const ingest::Normalizer* normalizer = broker_.normalizer();
  if (routable && normalizer != nullptr && broker_.pipeline() != nullptr) {
    record = normalizer->normalize(publish.topic, publish.payload, core::nowMicros());
  }
  std::size_t delivered = 0;
  std::uint64_t durableSeq = 0;  // state store writes the acknowledgement waits for
  if (routable) {
    auto message = std::make_shared<Message>();
    message->qos = qos;
    message->retain = publish.retain;
    if (v5()) {
      mqtt::Properties& p = publish.properties;
      if (p.messageExpiryInterval) {
        message->expiresAtUs =
            core::monotonicMicros() + std::int64_t{*p.messageExpiryInterval} * 1'000'000;
        p.messageExpiryInterval.reset();  // re-computed per delivery
      }
      // What is left is passed through as-is to MQTT 5 subscribers.
      if (!p.empty()) message->properties = std::make_shared<mqtt::Properties>(std::move(p));
    }
    if (record) {
      message->topic = publish.topic;
      message->payload = publish.payload;
    } else {
      message->topic = std::move(publish.topic);
      message->payload = std::move(publish.payload);
    }
    delivered = broker_.route(message, session_.get(), &durableSeq);
  }

  mqtt::PacketType ackType = qos == 1 ? mqtt::PacketType::kPuback : mqtt::PacketType::kPubrec;
  if (!record) {
    if (qos == 2) durableSeq = std::max(durableSeq, session_->markIncomingQos2Committed(packetId));
    // MQTT 5 tells the publisher when nobody received it (0x10 is still a success).
    const std::uint8_t code =
        routable && delivered == 0 ? mqtt::reason::kNoMatchingSubscribers : mqtt::reason::kSuccess;
    if (qos > 0 && durableSeq == 0) {
      queueAck(ackType, packetId, true, code);
    } else if (qos > 0) {
      // Copies for persistent sessions (or the retained update) must be on disk first.
      const std::uint64_t sequence = queueAck(ackType, packetId, false, code);
      broker_.whenStateDurable(durableSeq, [self = shared_from_this(), sequence] {
        asio::post(self->executor(), [self, sequence] { self->onAckReady(sequence); });
      });
    }
    return true;
  }

  broker_.countIngested();
  if (qos == 0) {
    broker_.pipeline()->submit(std::move(*record), nullptr);
    return true;
  }
  // Durable acknowledgement: the PUBACK/PUBREC is released by the writer thread after commit.
  // With persistent subscribers it also waits for the broker state store: both writes were
  // queued before this and commit in parallel; the later one releases the ack.
  std::uint64_t sequence = queueAck(ackType, packetId, false);
  broker_.pipeline()->submit(std::move(*record), [self = shared_from_this(), session = session_,
                                                  sequence, packetId, qos, durableSeq] {
    std::uint64_t seq = durableSeq;
    if (qos == 2) seq = std::max(seq, session->markIncomingQos2Committed(packetId));
    self->broker_.whenStateDurable(seq, [self, sequence] {
      asio::post(self->executor(), [self, sequence] { self->onAckReady(sequence); });
    });
  });
  return true;
}

bool Connection::denyPublish(const mqtt::Publish& publish) {
  broker_.countDenied();
  spdlog::info("mqtt: client '{}' ({}) of '{}' may not publish on '{}'; dropped", clientId(), peer_,
               names_.identity(), publish.topic);
  if (publish.qos == 0) return true;
  const mqtt::PacketType ackType =
      publish.qos == 1 ? mqtt::PacketType::kPuback : mqtt::PacketType::kPubrec;
  if (v5()) {
    // 0x87 ends the exchange (a PUBREC with an error is not followed by PUBREL). A PUBACK
    // leaving lowers the receive-maximum count, so a QoS 1 one counts until then.
    if (publish.qos == 1) ++inboundInflight_;
    queueAck(ackType, publish.packetId, true, mqtt::reason::kNotAuthorized);
    return true;
  }
  // 3.1.1 has no way to say no: acknowledge as if delivered, so the client moves on. A QoS 2
  // exchange is recorded as committed so that its PUBREL is answered normally.
  if (publish.qos == 2) {
    if (!session_->beginIncomingQos2(publish.packetId) &&
        !session_->incomingQos2Committed(publish.packetId)) {
      return true;  // the first copy's PUBREC is still coming
    }
    session_->markIncomingQos2Committed(publish.packetId);
  }
  queueAck(ackType, publish.packetId, true);
  return true;
}

bool Connection::handleAck(const mqtt::Ack& ack) {
  switch (ack.type) {
    case mqtt::PacketType::kPuback:
      if (!session_->onPuback(ack.packetId)) {
        spdlog::debug("mqtt: client '{}' acked unknown packet id {}", clientId(), ack.packetId);
      }
      break;
    case mqtt::PacketType::kPubrec:
      if (v5() && ack.reasonCode >= 0x80) {
        // MQTT 5: the client refused the message; the QoS 2 flow ends here, without PUBREL.
        session_->onPubrecError(ack.packetId);
      } else if (!session_->onPubrec(ack.packetId)) {
        // Still answer, so a confused client can finish its flow.
        encodeAck(mqtt::PacketType::kPubrel, ack.packetId, mqtt::reason::kPacketIdentifierNotFound);
      }
      break;
    case mqtt::PacketType::kPubrel: {
      const bool known = session_->releaseIncomingQos2(ack.packetId);
      if (known && inboundInflight_ > 0) --inboundInflight_;
      queueAck(mqtt::PacketType::kPubcomp, ack.packetId, true,
               known ? mqtt::reason::kSuccess : mqtt::reason::kPacketIdentifierNotFound);
      break;
    }
    case mqtt::PacketType::kPubcomp:
      session_->onPubcomp(ack.packetId);
      break;
    default:
      break;
  }
  return true;
}

bool Connection::handleSubscribe(const mqtt::Subscribe& subscribe) {
  std::vector<std::uint8_t> codes;
  codes.reserve(subscribe.subscriptions.size());
  std::vector<std::pair<const mqtt::Subscription*, SubscriptionOptions>> retained;
  const std::uint32_t subscriptionId = subscribe.properties.subscriptionIdentifiers.empty()
                                           ? 0
                                           : subscribe.properties.subscriptionIdentifiers.front();
  for (const auto& subscription : subscribe.subscriptions) {
    const std::optional<SharedFilter> shared = parseSharedFilter(subscription.filter);
    if (shared && !shared->valid) {
      codes.push_back(v5() ? mqtt::reason::kTopicFilterInvalid : mqtt::kSubackFailure);
      continue;
    }
    if (acl_ && !acl_->maySubscribe(subscription.filter)) {
      broker_.countDenied();
      spdlog::info("mqtt: client '{}' ({}) of '{}' may not subscribe to '{}'", clientId(), peer_,
                   names_.identity(), subscription.filter);
      codes.push_back(v5() ? mqtt::reason::kNotAuthorized : mqtt::kSubackFailure);
      continue;
    }
    SubscriptionOptions options{.qos = subscription.qos,
                                .noLocal = subscription.noLocal,
                                .retainAsPublished = subscription.retainAsPublished,
                                .retainHandling = subscription.retainHandling,
                                .subscriptionId = subscriptionId};
    const bool existed = broker_.subscribe(session_, subscription.filter, options);
    codes.push_back(subscription.qos);
    // Retain handling (MQTT 5): 0 always, 1 only for a new subscription, 2 never; a shared
    // subscription never gets retained messages (§4.8.2).
    const bool sendRetained = !shared && (subscription.retainHandling == 0 ||
                                          (subscription.retainHandling == 1 && !existed));
    if (sendRetained) retained.emplace_back(&subscription, options);
  }
  if (v5()) {
    mqtt::Suback suback{.packetId = subscribe.packetId, .returnCodes = std::move(codes)};
    mqtt::encodeSuback5(suback, io().outbox);
  } else {
    mqtt::encodeSuback(subscribe.packetId, codes, io().outbox);
  }
  // Retained messages follow the SUBACK (session bytes are written after this loop's own).
  for (const auto& [subscription, options] : retained) {
    broker_.deliverRetained(session_, subscription->filter, options);
  }
  return true;
}

bool Connection::handleUnsubscribe(const mqtt::Unsubscribe& unsubscribe) {
  mqtt::Unsuback unsuback{.packetId = unsubscribe.packetId};
  for (const auto& filter : unsubscribe.filters) {
    const bool existed = broker_.unsubscribe(session_, filter);
    unsuback.reasonCodes.push_back(existed ? mqtt::reason::kSuccess
                                           : mqtt::reason::kNoSubscriptionExisted);
  }
  if (v5()) {
    mqtt::encodeUnsuback5(unsuback, io().outbox);
  } else {
    mqtt::encodeAck(mqtt::PacketType::kUnsuback, unsubscribe.packetId, io().outbox);
  }
  return true;
}

void Connection::encodeAck(mqtt::PacketType type, std::uint16_t packetId, std::uint8_t reasonCode) {
  if (v5()) {
    mqtt::encodeAck5(type, packetId, reasonCode, nullptr, io().outbox);
  } else {
    mqtt::encodeAck(type, packetId, io().outbox);
  }
}

std::uint64_t Connection::queueAck(mqtt::PacketType type, std::uint16_t packetId, bool ready,
                                   std::uint8_t reasonCode) {
  std::uint64_t sequence = nextAckSequence_++;
  if (acksHead_ > 64 && acksHead_ * 2 > acks_.size()) {
    // A long run of acks never fully drained: drop the sent ones from the front.
    acks_.erase(acks_.begin(), acks_.begin() + static_cast<std::ptrdiff_t>(acksHead_));
    acksHead_ = 0;
  }
  acks_.push_back(PendingAck{sequence, type, packetId, ready, reasonCode});
  if (ready) flushAcks();
  return sequence;
}

void Connection::onAckReady(std::uint64_t sequence) {
  if (state_ == State::kClosed || acksHead_ == acks_.size()) return;
  const std::uint64_t first = acks_[acksHead_].sequence;
  if (sequence < first) return;
  const std::size_t index = acksHead_ + static_cast<std::size_t>(sequence - first);
  if (index >= acks_.size()) return;
  acks_[index].ready = true;
  flushAcks();
  flush();
}

void Connection::flushAcks() {
  // Acknowledgements leave in the order the publishes arrived (MQTT 3.1.1 §4.6).
  while (acksHead_ < acks_.size() && acks_[acksHead_].ready) {
    const PendingAck& ack = acks_[acksHead_];
    encodeAck(ack.type, ack.packetId, ack.reasonCode);
    // A QoS 1 exchange is complete once its PUBACK leaves (QoS 2 at PUBREL, see handleAck).
    if (ack.type == mqtt::PacketType::kPuback && inboundInflight_ > 0) --inboundInflight_;
    ++acksHead_;
  }
  if (acksHead_ == acks_.size()) {
    acks_.clear();
    acksHead_ = 0;
    // Keep room for a device's usual one or few acks; give back what a burst needed.
    if (acks_.capacity() > 16) std::vector<PendingAck>().swap(acks_);
  }
}

void Connection::onSessionWake() {
  flush();
}

void Connection::flush() {
  if (writeInProgress_) return;
  for (;;) {
    Io& io = this->io();
    io.writing.clear();
    io.writing.swap(io.outbox);
    if (state_ == State::kConnected && session_) session_->takeOutbox(io.writing);
    if (io.writing.empty()) {
      if (closeAfterWrite_) goodbyePending_ = stream_.shutdown(shared_from_this());
      trimIo();
      return;
    }
    if (!stream_.plainTcp()) {
      writeInProgress_ = true;
      stream_.asyncWrite(asio::buffer(io.writing),
                         [self = shared_from_this()](const boost::system::error_code& ec,
                                                     std::size_t) { self->onWritten(ec); });
      return;
    }
    if (!writePlain()) return;
  }
}

bool Connection::writePlain() {
  net::RawSocket& socket = stream_.plainSocket();
  Io& io = this->io();
  while (io.written < io.writing.size()) {
    std::size_t n = 0;
    const auto ec = socket.writeSome(
        asio::buffer(io.writing.data() + io.written, io.writing.size() - io.written), n);
    if (ec == asio::error::would_block) {
      writeInProgress_ = true;
      updateInterest();
      return false;
    }
    if (ec) {
      onWritten(ec);
      return false;
    }
    io.written += n;
  }
  io.written = 0;
  io.writing.clear();
  return true;
}

void Connection::onWritten(const boost::system::error_code& ec) {
  writeInProgress_ = false;
  if (ec) {
    if (state_ != State::kClosed) close("write failed: " + ec.message(), false, true);
    stream_.close();
    return;
  }
  // Keep large one-off buffers from living on in idle connections.
  if (io_ && io_->writing.capacity() > 4 * kMaxReadChunk) std::string().swap(io_->writing);
  flush();
}

void Connection::armKeepalive() {
  if (keepAlive_ == 0) {
    wheel_.cancel(*this);
    return;
  }
  // The standard allows one and a half keepalive periods of silence. Activity does not move the
  // deadline (that would cost a wheel update per packet); onDeadline checks it instead.
  wheel_.schedule(*this, lastActivityUs_ + std::int64_t{keepAlive_} * 1'500'000);
}

void Connection::onDeadline(std::int64_t nowUs) {
  switch (state_) {
    case State::kAwaitConnect:
      close("no CONNECT within 10 s", true, false);
      return;
    case State::kConnected:
      if (keepAlive_ != 0 && nowUs - lastActivityUs_ >= std::int64_t{keepAlive_} * 1'500'000) {
        close("keepalive timeout", false, true, mqtt::reason::kKeepAliveTimeout);
      } else {
        armKeepalive();
      }
      return;
    case State::kClosed: {
      // Do not wait forever on a peer that does not read (or answer a WebSocket close frame).
      stream_.close();
      const std::shared_ptr<Connection> hold = dropLingerHold();
      return;
    }
  }
}

void Connection::closeFromBroker(std::string_view reason, bool sendWill, std::uint8_t reasonCode) {
  close(reason, false, sendWill, reasonCode);
}

void Connection::close(std::string_view reason, bool protocolError, bool sendWill,
                       std::uint8_t disconnectReason) {
  if (state_ == State::kClosed) return;
  // The broker's registry owns open connections: dropping this one from it below must not
  // destroy it before this returns.
  const std::shared_ptr<Connection> self = shared_from_this();
  bool wasConnected = state_ == State::kConnected;
  state_ = State::kClosed;
  if (wasConnected && v5() && (disconnectReason != 0 || protocolError)) {
    // MQTT 5 tells the client why (§4.13); 3.1.1 can only close.
    mqtt::encodeDisconnect5(disconnectReason != 0 ? disconnectReason : mqtt::reason::kProtocolError,
                            nullptr, io().outbox);
  }
  if (protocolError) {
    broker_.countProtocolError();
    spdlog::warn("mqtt: closing client '{}' ({}): {}", clientId().empty() ? "?" : clientId(), peer_,
                 reason);
  } else {
    spdlog::debug("mqtt: client '{}' ({}) closed: {}", clientId(), peer_, reason);
  }
  wheel_.cancel(*this);
  std::vector<PendingAck>().swap(acks_);  // unacknowledged publishes will be resent by the client
  acksHead_ = 0;

  MessagePtr will;
  std::uint32_t willDelay = 0;
  if (sendWill && will_ && wasConnected) {
    auto message = std::make_shared<Message>();
    message->topic = std::move(will_->topic);
    message->payload = std::move(will_->payload);
    message->qos = will_->qos;
    message->retain = will_->retain;
    mqtt::Properties& p = will_->properties;
    willDelay = p.willDelayInterval.value_or(0);
    p.willDelayInterval.reset();
    if (p.messageExpiryInterval) {
      // The will's lifetime starts when it is published; a delayed will adds its delay.
      message->expiresAtUs = core::monotonicMicros() +
                             (std::int64_t{*p.messageExpiryInterval} + willDelay) * 1'000'000;
      p.messageExpiryInterval.reset();
    }
    if (!p.empty()) message->properties = std::make_shared<mqtt::Properties>(std::move(p));
    will = std::move(message);
  }
  will_.reset();
  if (session_) {
    broker_.closeSession(session_, this, std::move(will), willDelay);
    rare().clientId = session_->clientId();  // for what is logged after this
    session_.reset();
  } else if (will) {
    broker_.publishWill(will);
  }
  if (!grant().empty()) {
    broker_.authenticator()->release(std::string(grant()));
    grantReleased_ = true;
  }
  if (counted_) broker_.countConnected(-1);
  broker_.connectionClosed(this);

  // Let a final CONNACK (with an error code) reach the client before the socket closes.
  closeAfterWrite_ = true;
  if (!writeInProgress_) {
    flush();
  }
  if (writeInProgress_ || goodbyePending_) {
    // Bounded in time by onDeadline. Until then the write or the goodbye keeps this alive (a
    // plain TCP write has no handler that would: it holds itself).
    if (writeInProgress_ && stream_.plainTcp()) rare().lingerHold = self;
    wheel_.schedule(*this, core::monotonicMicros() + kCloseLingerUs);
  }
}

}  // namespace tern::broker
