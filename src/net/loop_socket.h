#pragma once
// A TCP socket bound to its event loop's concrete executor. tcp::socket carries a type-erased
// any_io_executor (56 bytes), and so does every operation pending on it; with the io_context's
// own executor the socket is 40 bytes instead of 88 and its pending read wait about half the
// size, which is what an idle connection costs. It converts to tcp::socket by move where a
// library wants one (TLS, WebSocket).
#include <boost/asio/basic_stream_socket.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

namespace tern::net {

using LoopSocket =
    boost::asio::basic_stream_socket<boost::asio::ip::tcp, boost::asio::io_context::executor_type>;

}  // namespace tern::net
