#pragma once
// Queclink GL200 family (GL200/GL300/GL500, GV55/GV200/GV300/GV350/GV500/GV600, GMT100, ...):
// text "+RESP/+BUFF/+ACK:GTxxx,...$" and binary messages on one port.
// Session extras it reads: "model" (device model, overrides the one the protocol version names),
// "ack" ("true": acknowledge every text message with "+SACK:<count>$"), "password" (for commands;
// default "gl200").
#include <memory>

#include "codec/trackers/protocol.h"

namespace tern::codec::trackers {

std::unique_ptr<ProtocolCodec> createGl200Codec();

}  // namespace tern::codec::trackers
