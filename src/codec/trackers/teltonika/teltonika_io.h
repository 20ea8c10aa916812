#pragma once
// Teltonika IO elements → Position attributes (Traccar's names, units and value types).
#include <string>
#include <string_view>

#include "codec/trackers/position.h"

namespace tern::codec::trackers::teltonika {

// True for the FMB/FMC/FMM/FMT... families whose OBD and CAN ids Traccar maps by model.
bool isFmModel(std::string_view model);

// A fixed-width IO value (1, 2, 4 or 8 bytes, big-endian) of codec 8 / 8E / 16.
void decodeIo(Position& p, unsigned id, std::string_view value, const std::string& model);
// A variable-length IO value of codec 8 Extended (VIN, DTCs, BLE tags, ...).
void decodeVariableIo(Position& p, unsigned id, std::string_view value);
// A GH3000 (codec 7) IO value, whose ids mean other things.
void decodeGh3000Io(Position& p, unsigned id, std::string_view value);

}  // namespace tern::codec::trackers::teltonika
