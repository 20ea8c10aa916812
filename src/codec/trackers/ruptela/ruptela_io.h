#pragma once
// Ruptela IO elements → Position attributes (Traccar's names, units and value types).
#include <string_view>

#include "codec/trackers/position.h"

namespace tern::codec::trackers::ruptela {

// One IO value (1, 2, 4 or 8 bytes, big-endian).
void decodeIo(Position& p, unsigned id, std::string_view value);
// After a record's IO: joins values that only mean something together (driver id halves).
void finishIo(Position& p);

}  // namespace tern::codec::trackers::ruptela
