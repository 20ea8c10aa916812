#pragma once
// Loads the reference tracker frames (test/data/trackers/<protocol>.json, from Traccar's tests)
// and checks a decoder's output against what each frame expects.
#include <boost/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "codec/trackers/protocol.h"

namespace tern::test {

struct CorpusFrame {
  std::string id;             // e.g. "gt06-002"
  std::string testMethod;     // frames of one Traccar test method share a session, in order
  std::string bytes;          // the raw frame
  boost::json::object setup;  // decoder flags, device_model, ...
  boost::json::object expected;
  std::optional<std::string> responseHex;       // exact expected answer (lowercase hex), if any
  std::optional<std::string> responseTemplate;  // time-dependent answer, described
  bool disabled = false;                        // @Disabled in Traccar
};

struct SplitCase {
  std::string source;
  std::string input;
  std::optional<std::string> expectedFrame;  // nullopt: incomplete
};

std::vector<CorpusFrame> loadCorpus(const std::string& protocol);
std::vector<SplitCase> loadSplitCases(const std::string& protocol);

// Checks `result` against the frame's expectations (null / not null / positions with sane or
// exact time, validity and coordinates / attribute values). Returns "" when it holds, else a
// description of every mismatch.
std::string checkExpectations(const CorpusFrame& frame,
                              const codec::trackers::DecodeResult& result);

// Checks the response bytes against responseHex (exact) or, without a template, that there is no
// response. Frames with a template return "" (the protocol's own test checks those).
std::string checkResponse(const CorpusFrame& frame, const codec::trackers::DecodeResult& result);

// Microseconds of "2015-10-20 14:21:11.000" (UTC).
std::optional<std::int64_t> parseCorpusTime(const std::string& text);

}  // namespace tern::test
