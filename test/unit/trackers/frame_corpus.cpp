#include "frame_corpus.h"

#include <cmath>
#include <fstream>
#include <sstream>

#include "codec/trackers/util.h"

namespace tern::test {

namespace json = boost::json;
namespace trk = codec::trackers;

namespace {

json::object loadFile(const std::string& protocol) {
  std::string path = std::string(TERN_SOURCE_DIR) + "/test/data/trackers/" + protocol + ".json";
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path);
  std::stringstream text;
  text << in.rdbuf();
  return json::parse(text.str()).as_object();
}

std::string str(const json::value& v) {
  return std::string(v.as_string().c_str());
}

bool sameValue(const json::value& expected, const trk::AttributeValue& actual, std::string& how) {
  if (expected.is_bool()) {
    auto* b = std::get_if<bool>(&actual);
    return b != nullptr && *b == expected.as_bool();
  }
  if (expected.is_string()) {
    auto* s = std::get_if<std::string>(&actual);
    return s != nullptr && *s == expected.as_string().c_str();
  }
  if (expected.is_number()) {
    double want = expected.to_number<double>();
    double got = 0;
    if (auto* i = std::get_if<std::int64_t>(&actual)) {
      got = static_cast<double>(*i);
    } else if (auto* d = std::get_if<double>(&actual)) {
      got = *d;
    } else {
      how = "not a number";
      return false;
    }
    return std::fabs(want - got) <= 1e-6 * std::max(1.0, std::fabs(want));
  }
  how = "unsupported expectation";
  return false;
}

std::string describe(const trk::AttributeValue& v) {
  return std::visit(
      [](const auto& x) -> std::string {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::string>) {
          return "\"" + x + "\"";
        } else if constexpr (std::is_same_v<T, bool>) {
          return x ? "true" : "false";
        } else {
          return std::to_string(x);
        }
      },
      v);
}

// Traccar's ProtocolTest sanity ranges for a decoded position.
std::string checkSane(const trk::Position& p) {
  std::string out;
  if (!p.hasLocation) return out;
  if (p.latitude < -90 || p.latitude > 90) out += " latitude out of range;";
  if (p.longitude < -180 || p.longitude > 180) out += " longitude out of range;";
  if (p.speedKmh < 0) out += " negative speed;";
  if (p.course && (*p.course < 0 || *p.course > 360)) out += " course out of range;";
  return out;
}

}  // namespace

std::optional<std::int64_t> parseCorpusTime(const std::string& t) {
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, s = 0, ms = 0;
  if (std::sscanf(t.c_str(), "%d-%d-%d %d:%d:%d.%d", &y, &mo, &d, &h, &mi, &s, &ms) < 6) {
    return std::nullopt;
  }
  return trk::civilToMicros(y, mo, d, h, mi, s, ms);
}

std::vector<CorpusFrame> loadCorpus(const std::string& protocol) {
  json::object root = loadFile(protocol);
  std::vector<CorpusFrame> frames;
  for (const auto& v : root.at("frames").as_array()) {
    const auto& f = v.as_object();
    CorpusFrame frame;
    frame.id = str(f.at("id"));
    frame.setup = f.at("setup").as_object();
    if (auto* m = frame.setup.if_contains("test_method")) frame.testMethod = str(*m);
    if (auto* d = frame.setup.if_contains("test_disabled")) frame.disabled = d->as_bool();
    std::string encoding = str(f.at("encoding"));
    if (encoding == "hex") {
      frame.bytes = *trk::fromHex(str(f.at("data")));
    } else if (auto* hex = f.if_contains("data_hex")) {
      frame.bytes = *trk::fromHex(str(*hex));
    } else {
      frame.bytes = str(f.at("data"));
    }
    frame.expected = f.at("expected").as_object();
    if (auto* r = f.if_contains("server_response_derived")) {
      const auto& resp = r->as_object();
      if (auto* t = resp.if_contains("template"); t && t->is_string()) {
        frame.responseTemplate = str(*t);
      } else if (auto* h = resp.if_contains("hex"); h && h->is_string()) {
        std::string hex = str(*h);
        for (char& c : hex) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        frame.responseHex = hex;
      }
    }
    frames.push_back(std::move(frame));
  }
  return frames;
}

std::vector<SplitCase> loadSplitCases(const std::string& protocol) {
  json::object root = loadFile(protocol);
  std::vector<SplitCase> cases;
  if (auto* tests = root.if_contains("frame_decoder_tests")) {
    for (const auto& v : tests->as_array()) {
      const auto& t = v.as_object();
      SplitCase c;
      c.source = str(t.at("source"));
      if (auto* hex = t.if_contains("input_hex")) {
        c.input = *trk::fromHex(str(*hex));
      } else if (auto* text = t.if_contains("input")) {
        c.input = str(*text);
      }
      if (auto* e = t.if_contains("expected_frame_hex"); e && e->is_string()) {
        c.expectedFrame = *trk::fromHex(str(*e));
      } else if (auto* et = t.if_contains("expected_frame"); et && et->is_string()) {
        c.expectedFrame = str(*et);
      }
      cases.push_back(std::move(c));
    }
  }
  return cases;
}

std::string checkExpectations(const CorpusFrame& frame, const trk::DecodeResult& result) {
  const json::object& e = frame.expected;
  std::string out;
  bool wantPosition = false;
  if (auto* p = e.if_contains("position")) wantPosition = p->as_bool();
  if (auto* p = e.if_contains("positions")) wantPosition = wantPosition || p->as_bool();
  // verifyNotNull: a position decodes, its location unchecked (e.g. no-fix status frames).
  bool notNull = false;
  if (auto* d = e.if_contains("decodes_to"); d && d->is_string() && d->as_string() == "non-null") {
    wantPosition = true;
    notNull = true;
  }
  if (!wantPosition) {
    if (!result.positions.empty()) {
      out += "expected no position, got " + std::to_string(result.positions.size()) + ";";
    }
    return out;
  }
  if (result.positions.empty()) return "expected a position, got none;";
  bool locationChecked = true;
  if (auto* l = e.if_contains("location_checked")) locationChecked = l->as_bool();
  if (notNull && !e.contains("location_checked")) locationChecked = false;
  for (const auto& p : result.positions) {
    if (locationChecked) {
      out += checkSane(p);
      if (!p.hasLocation) out += " position without location;";
    }
  }
  const trk::Position& first = result.positions.front();
  if (auto* t = e.if_contains("time_utc")) {
    auto want = parseCorpusTime(str(*t));
    if (!want || *want != first.deviceTimeUs) {
      out += " time " + std::to_string(first.deviceTimeUs) + " != " + str(*t) + ";";
    }
  }
  if (auto* v = e.if_contains("valid"); v && v->as_bool() != first.valid) out += " valid differs;";
  double tolerance = 1e-5;
  if (auto* tol = e.if_contains("latlon_tolerance_deg")) tolerance = tol->to_number<double>();
  if (auto* lat = e.if_contains("latitude")) {
    if (std::fabs(lat->to_number<double>() - first.latitude) > tolerance) {
      out += " latitude " + std::to_string(first.latitude) + ";";
    }
  }
  if (auto* lon = e.if_contains("longitude")) {
    if (std::fabs(lon->to_number<double>() - first.longitude) > tolerance) {
      out += " longitude " + std::to_string(first.longitude) + ";";
    }
  }
  if (auto* attrs = e.if_contains("attributes")) {
    for (const auto& [key, want] : attrs->as_object()) {
      const trk::AttributeValue* got = first.get(std::string(key));
      // Traccar asserts course/altitude like attributes; here they are Position fields.
      std::optional<trk::AttributeValue> field;
      if (got == nullptr && key == "course" && first.course) field = *first.course;
      if (got == nullptr && key == "altitude" && first.altitude) field = *first.altitude;
      if (field) got = &*field;
      if (want.is_null()) {
        if (got != nullptr) out += " attribute " + std::string(key) + " should be absent;";
        continue;
      }
      if (got == nullptr) {
        out += " attribute " + std::string(key) + " missing;";
        continue;
      }
      std::string how;
      if (!sameValue(want, *got, how)) {
        out += " attribute " + std::string(key) + " = " + describe(*got) + ", want " +
               json::serialize(want) + (how.empty() ? "" : " (" + how + ")") + ";";
      }
    }
  }
  if (auto* ne = e.if_contains("attributes_nonempty"); ne && ne->as_bool()) {
    if (first.attributes.empty()) out += " attributes empty;";
  }
  if (auto* every = e.if_contains("every_position")) {
    // The same time/validity/coordinates expectation for each position of a list.
    CorpusFrame single = frame;
    single.expected = every->as_object();
    single.expected["position"] = true;
    for (std::size_t i = 0; i < result.positions.size(); ++i) {
      codec::trackers::DecodeResult one;
      one.positions.push_back(result.positions[i]);
      std::string problem = checkExpectations(single, one);
      if (!problem.empty()) out += " position " + std::to_string(i) + ":" + problem;
    }
  }
  return out;
}

std::string checkResponse(const CorpusFrame& frame, const trk::DecodeResult& result) {
  if (frame.responseTemplate) return "";
  std::string got = trk::toHex(result.response);
  if (frame.responseHex) {
    return got == *frame.responseHex ? "" : "response " + got + " != " + *frame.responseHex;
  }
  return got.empty() ? "" : "unexpected response " + got;
}

}  // namespace tern::test
