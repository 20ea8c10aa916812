#include "net/byte_stream.h"

#include <string>

namespace tern::net {

namespace {

class StreamErrorCategory : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "tern.stream"; }
  std::string message(int value) const override {
    switch (static_cast<StreamError>(value)) {
      case StreamError::kTextFrame:
        return "WebSocket text frame (only binary frames carry the stream)";
    }
    return "unknown stream error";
  }
};

}  // namespace

const boost::system::error_category& streamErrorCategory() {
  static const StreamErrorCategory category;
  return category;
}

boost::system::error_code make_error_code(StreamError error) {
  return {static_cast<int>(error), streamErrorCategory()};
}

}  // namespace tern::net
