#include "ingest/spool.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>

namespace tern::ingest {

namespace {

constexpr std::uint8_t kRecordVersion = 1;
constexpr std::uint8_t kFlagDeviceTime = 1;
constexpr std::uint8_t kFlagPayloadJson = 2;
enum FieldTag : std::uint8_t { kTagInt = 0, kTagDouble = 1, kTagBool = 2, kTagString = 3 };
constexpr std::size_t kReadBlock = 1024 * 1024;
constexpr std::size_t kCheckpointBytes = 20;
constexpr const char* kCheckpointName = "checkpoint";
constexpr const char* kCheckpointTmpName = "checkpoint.tmp";

constexpr std::array<std::uint32_t, 256> makeCrcTable() {
  std::array<std::uint32_t, 256> table{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1u) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    table[i] = c;
  }
  return table;
}
constexpr auto kCrcTable = makeCrcTable();

void putU8(std::string& out, std::uint8_t v) {
  out.push_back(static_cast<char>(v));
}
void putU32(std::string& out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xffu));
}
void putU64(std::string& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xffu));
}
void putString(std::string& out, const std::string& s) {
  putU32(out, static_cast<std::uint32_t>(s.size()));
  out.append(s);
}

std::uint32_t loadU32(const char* p) {
  std::uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}
std::uint64_t loadU64(const char* p) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

// Bounds-checked cursor over an encoded record.
class Reader {
 public:
  explicit Reader(std::string_view data) : data_(data) {}
  bool u8(std::uint8_t& v) {
    if (left() < 1) return false;
    v = static_cast<std::uint8_t>(data_[pos_++]);
    return true;
  }
  bool u32(std::uint32_t& v) {
    if (left() < 4) return false;
    v = loadU32(data_.data() + pos_);
    pos_ += 4;
    return true;
  }
  bool u64(std::uint64_t& v) {
    if (left() < 8) return false;
    v = loadU64(data_.data() + pos_);
    pos_ += 8;
    return true;
  }
  bool i64(std::int64_t& v) {
    std::uint64_t u = 0;
    if (!u64(u)) return false;
    v = static_cast<std::int64_t>(u);
    return true;
  }
  bool str(std::string& s) {
    std::uint32_t n = 0;
    if (!u32(n) || left() < n) return false;
    s.assign(data_.substr(pos_, n));
    pos_ += n;
    return true;
  }
  std::size_t left() const { return data_.size() - pos_; }

 private:
  std::string_view data_;
  std::size_t pos_ = 0;
};

std::string errnoText(const std::string& what) {
  std::string out = what;
  out.append(": ");
  out.append(std::strerror(errno));
  return out;
}

bool writeAll(int fd, const char* data, std::size_t size) {
  while (size > 0) {
    const ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

// Makes a created or renamed directory entry durable (storage.sync = full only).
void syncDir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

bool parseSegmentName(const std::string& name, std::uint64_t& seq) {
  if (name.size() != 24 || name.compare(20, 4, ".log") != 0) return false;
  seq = 0;
  for (std::size_t i = 0; i < 20; ++i) {
    if (name[i] < '0' || name[i] > '9') return false;
    seq = seq * 10 + static_cast<std::uint64_t>(name[i] - '0');
  }
  return true;
}

}  // namespace

std::uint32_t crc32c(std::string_view data) {
  std::uint32_t c = 0xffffffffu;
  for (const char ch : data) {
    c = kCrcTable[(c ^ static_cast<unsigned char>(ch)) & 0xffu] ^ (c >> 8);
  }
  return c ^ 0xffffffffu;
}

void encodeRecord(const storage::Record& record, std::string& out) {
  putU8(out, kRecordVersion);
  putString(out, record.deviceId);
  putU64(out, static_cast<std::uint64_t>(record.serverTimeUs));
  std::uint8_t flags = 0;
  if (record.deviceTimeUs) flags |= kFlagDeviceTime;
  if (record.payloadIsJson) flags |= kFlagPayloadJson;
  putU8(out, flags);
  if (record.deviceTimeUs) putU64(out, static_cast<std::uint64_t>(*record.deviceTimeUs));
  putString(out, record.nodeId);
  putString(out, record.topic);
  putString(out, record.payload);
  putU32(out, static_cast<std::uint32_t>(record.fields.size()));
  for (const auto& field : record.fields) {
    putString(out, field.key);
    if (const auto* i = std::get_if<std::int64_t>(&field.value)) {
      putU8(out, kTagInt);
      putU64(out, static_cast<std::uint64_t>(*i));
    } else if (const auto* d = std::get_if<double>(&field.value)) {
      putU8(out, kTagDouble);
      putU64(out, std::bit_cast<std::uint64_t>(*d));
    } else if (const auto* b = std::get_if<bool>(&field.value)) {
      putU8(out, kTagBool);
      putU8(out, *b ? 1 : 0);
    } else {
      putU8(out, kTagString);
      putString(out, std::get<std::string>(field.value));
    }
  }
}

bool decodeRecord(std::string_view bytes, storage::Record& out) {
  Reader in(bytes);
  std::uint8_t version = 0;
  std::uint8_t flags = 0;
  if (!in.u8(version) || version != kRecordVersion) return false;
  if (!in.str(out.deviceId) || !in.i64(out.serverTimeUs) || !in.u8(flags)) return false;
  if ((flags & ~(kFlagDeviceTime | kFlagPayloadJson)) != 0) return false;
  out.deviceTimeUs.reset();
  if (flags & kFlagDeviceTime) {
    std::int64_t t = 0;
    if (!in.i64(t)) return false;
    out.deviceTimeUs = t;
  }
  out.payloadIsJson = (flags & kFlagPayloadJson) != 0;
  if (!in.str(out.nodeId) || !in.str(out.topic) || !in.str(out.payload)) return false;
  std::uint32_t count = 0;
  // Each field takes at least 6 bytes: a bad count fails here instead of reserving memory.
  if (!in.u32(count) || count > in.left() / 6) return false;
  out.fields.clear();
  out.fields.reserve(count);
  for (std::uint32_t i = 0; i < count; ++i) {
    storage::Field field;
    std::uint8_t tag = 0;
    if (!in.str(field.key) || !in.u8(tag)) return false;
    switch (tag) {
      case kTagInt: {
        std::int64_t v = 0;
        if (!in.i64(v)) return false;
        field.value = v;
        break;
      }
      case kTagDouble: {
        std::uint64_t v = 0;
        if (!in.u64(v)) return false;
        field.value = std::bit_cast<double>(v);
        break;
      }
      case kTagBool: {
        std::uint8_t v = 0;
        if (!in.u8(v) || v > 1) return false;
        field.value = v == 1;
        break;
      }
      case kTagString: {
        std::string v;
        if (!in.str(v)) return false;
        field.value = std::move(v);
        break;
      }
      default:
        return false;
    }
    out.fields.push_back(std::move(field));
  }
  return in.left() == 0;
}

void appendFrame(std::string_view payload, std::string& out) {
  putU32(out, static_cast<std::uint32_t>(payload.size()));
  putU32(out, crc32c(payload));
  out.append(payload);
}

FrameView parseFrame(std::string_view data) {
  FrameView frame;
  if (data.size() < kFrameHeaderBytes) return frame;
  const std::uint32_t length = loadU32(data.data());
  const std::uint32_t crc = loadU32(data.data() + 4);
  if (length > kMaxFrameBytes) {
    frame.status = FrameStatus::kCorrupt;
    return frame;
  }
  if (data.size() - kFrameHeaderBytes < length) return frame;
  const std::string_view payload = data.substr(kFrameHeaderBytes, length);
  if (crc32c(payload) != crc) {
    frame.status = FrameStatus::kCorrupt;
    return frame;
  }
  frame.status = FrameStatus::kOk;
  frame.payload = payload;
  frame.size = kFrameHeaderBytes + length;
  return frame;
}

Spool::Spool(SpoolOptions options) : options_(std::move(options)) {
  options_.segmentBytes = std::max<std::uint64_t>(1, options_.segmentBytes);
}

Spool::~Spool() {
  sealActive();
  if (readFd_ >= 0) ::close(readFd_);
}

std::string Spool::segmentPath(std::uint64_t seq) const {
  std::string name = std::to_string(seq);
  std::string path = options_.dir;
  path.append("/");
  path.append(20 - std::min<std::size_t>(20, name.size()), '0');
  path.append(name);
  path.append(".log");
  return path;
}

core::Status Spool::open() {
  std::error_code ec;
  std::filesystem::create_directories(options_.dir, ec);
  if (ec) return core::Error{"spool: cannot create " + options_.dir + ": " + ec.message()};
  segments_.clear();
  bytes_ = 0;
  for (const auto& entry : std::filesystem::directory_iterator(options_.dir, ec)) {
    const std::string name = entry.path().filename().string();
    std::uint64_t seq = 0;
    if (!parseSegmentName(name, seq)) continue;
    const auto size = entry.file_size(ec);
    if (ec) return core::Error{"spool: cannot stat " + entry.path().string() + ": " + ec.message()};
    segments_.push_back(Segment{seq, static_cast<std::uint64_t>(size)});
  }
  if (ec) return core::Error{"spool: cannot list " + options_.dir + ": " + ec.message()};
  std::sort(segments_.begin(), segments_.end(),
            [](const Segment& a, const Segment& b) { return a.seq < b.seq; });
  std::filesystem::remove(std::filesystem::path(options_.dir) / kCheckpointTmpName, ec);

  // The checkpoint names the first uncommitted record; anything before it is in the store.
  std::uint64_t cpSeq = 0;
  std::uint64_t cpOffset = 0;
  bool haveCheckpoint = false;
  const std::string cpPath = (std::filesystem::path(options_.dir) / kCheckpointName).string();
  if (const int fd = ::open(cpPath.c_str(), O_RDONLY | O_CLOEXEC); fd >= 0) {
    char buf[kCheckpointBytes];
    const ssize_t n = ::pread(fd, buf, sizeof buf, 0);
    ::close(fd);
    if (n == static_cast<ssize_t>(kCheckpointBytes) &&
        crc32c(std::string_view(buf, 16)) == loadU32(buf + 16)) {
      cpSeq = loadU64(buf);
      cpOffset = loadU64(buf + 8);
      haveCheckpoint = true;
    } else if (!segments_.empty()) {
      // Replaying from the start can only duplicate, never lose.
      spdlog::warn("spool: unreadable checkpoint, replaying {} from its start", options_.dir);
    }
  }
  readOffset_ = 0;
  if (haveCheckpoint) {
    while (!segments_.empty() && segments_.front().seq < cpSeq) {
      std::filesystem::remove(segmentPath(segments_.front().seq), ec);
      segments_.erase(segments_.begin());
    }
    if (!segments_.empty() && segments_.front().seq == cpSeq) {
      readOffset_ = std::min(cpOffset, segments_.front().size);
    }
  }
  for (const auto& s : segments_) bytes_ += s.size;
  // Sequence numbers never repeat, not even after the spool drained, so the checkpoint can never
  // point past a segment written later.
  nextSeq_ = std::max(cpSeq, segments_.empty() ? 0 : segments_.back().seq) + 1;
  haveChunk_ = false;
  if (!segments_.empty()) {
    spdlog::info("spool: {} segment(s), {} bytes to replay from {}", segments_.size(), bytes_,
                 options_.dir);
  }
  return {};
}

core::Status Spool::openActive() {
  const std::uint64_t seq = nextSeq_;
  const std::string path = segmentPath(seq);
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return core::Error{errnoText("spool: cannot create " + path)};
  ++nextSeq_;
  if (options_.syncFull) syncDir(options_.dir);
  activeFd_ = fd;
  segments_.push_back(Segment{seq, 0});
  return {};
}

void Spool::sealActive() {
  if (activeFd_ >= 0) ::close(activeFd_);
  activeFd_ = -1;
}

core::Status Spool::append(std::span<const storage::Record> records, bool* full) {
  if (full) *full = false;
  writeBuffer_.clear();
  for (const auto& record : records) {
    scratch_.clear();
    encodeRecord(record, scratch_);
    if (scratch_.size() > kMaxFrameBytes) return core::Error{"spool: record too large"};
    appendFrame(scratch_, writeBuffer_);
  }
  if (writeBuffer_.empty()) return {};
  if (bytes_ + writeBuffer_.size() > options_.maxBytes) {
    if (full) *full = true;
    return core::Error{"spool: quota of " + std::to_string(options_.maxBytes) + " bytes reached"};
  }
  if (activeFd_ >= 0 && segments_.back().size >= options_.segmentBytes) sealActive();
  if (activeFd_ < 0) {
    if (auto status = openActive(); !status.ok()) return status;
  }
  Segment& active = segments_.back();
  bool ok = writeAll(activeFd_, writeBuffer_.data(), writeBuffer_.size());
  if (ok && options_.syncFull) ok = ::fdatasync(activeFd_) == 0;
  if (!ok) {
    core::Status error = core::Error{errnoText("spool: write to " + segmentPath(active.seq))};
    // Cut a partial write off so that later frames never follow garbage; if that fails too,
    // the segment is sealed and its readers stop at the garbage.
    if (::ftruncate(activeFd_, static_cast<off_t>(active.size)) != 0) sealActive();
    return error;
  }
  active.size += writeBuffer_.size();
  bytes_ += writeBuffer_.size();
  return {};
}

core::Status Spool::fillReadBuffer(std::uint64_t offset, std::size_t need) {
  const Segment& head = segments_.front();
  if (readFd_ < 0 || readFdSeq_ != head.seq) {
    if (readFd_ >= 0) ::close(readFd_);
    readBuffer_.clear();
    const std::string path = segmentPath(head.seq);
    readFd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (readFd_ < 0) return core::Error{errnoText("spool: cannot open " + path)};
    readFdSeq_ = head.seq;
  }
  if (offset >= readBufferOffset_ && offset + need <= readBufferOffset_ + readBuffer_.size()) {
    return {};
  }
  const std::uint64_t avail = head.size > offset ? head.size - offset : 0;
  const auto want =
      static_cast<std::size_t>(std::min<std::uint64_t>(std::max(need, kReadBlock), avail));
  readBuffer_.resize(want);
  readBufferOffset_ = offset;
  std::size_t got = 0;
  while (got < want) {
    const ssize_t n =
        ::pread(readFd_, readBuffer_.data() + got, want - got, static_cast<off_t>(offset + got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      readBuffer_.clear();
      return core::Error{errnoText("spool: read " + segmentPath(head.seq))};
    }
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
  }
  readBuffer_.resize(got);
  return {};
}

core::Status Spool::dropHead() {
  const Segment head = segments_.front();
  if (readFd_ >= 0 && readFdSeq_ == head.seq) {
    ::close(readFd_);
    readFd_ = -1;
    readBuffer_.clear();
  }
  if (activeFd_ >= 0 && segments_.size() == 1) sealActive();
  segments_.erase(segments_.begin());
  bytes_ -= std::min(bytes_, head.size);
  readOffset_ = 0;
  haveChunk_ = false;
  if (::unlink(segmentPath(head.seq).c_str()) != 0 && errno != ENOENT) {
    return core::Error{errnoText("spool: cannot delete " + segmentPath(head.seq))};
  }
  return {};
}

core::Status Spool::readChunk(std::size_t maxRecords, std::vector<storage::Record>& out) {
  out.clear();
  haveChunk_ = false;
  while (!segments_.empty()) {
    const Segment& head = segments_.front();
    std::uint64_t pos = readOffset_;
    bool damaged = false;
    while (out.size() < maxRecords && pos < head.size) {
      const std::uint64_t avail = head.size - pos;
      if (avail < kFrameHeaderBytes) {
        damaged = true;  // a torn header
        break;
      }
      if (auto status = fillReadBuffer(pos, kFrameHeaderBytes); !status.ok()) return status;
      std::string_view view = std::string_view(readBuffer_).substr(pos - readBufferOffset_);
      if (view.size() < kFrameHeaderBytes) {
        damaged = true;  // the file is shorter than we thought
        break;
      }
      const std::uint64_t frameSize = kFrameHeaderBytes + std::uint64_t{loadU32(view.data())};
      if (frameSize > kFrameHeaderBytes + kMaxFrameBytes || frameSize > avail) {
        damaged = true;  // corrupt length or a torn last frame
        break;
      }
      if (auto status = fillReadBuffer(pos, static_cast<std::size_t>(frameSize)); !status.ok()) {
        return status;
      }
      view = std::string_view(readBuffer_).substr(pos - readBufferOffset_);
      const FrameView frame = parseFrame(view);
      storage::Record record;
      if (frame.status != FrameStatus::kOk || !decodeRecord(frame.payload, record)) {
        damaged = true;
        break;
      }
      out.push_back(std::move(record));
      pos += frame.size;
    }
    if (!out.empty()) {
      chunkEnd_ = pos;
      haveChunk_ = true;
      return {};
    }
    if (damaged) {
      // A torn tail from a crash (or damage): the frames before it were replayed, nothing after
      // it can be trusted.
      spdlog::warn("spool: {}: torn or corrupt frame at offset {}, skipping its last {} bytes",
                   segmentPath(head.seq), pos, head.size - pos);
    }
    // The head segment is fully replayed and committed: delete it and go on with the next.
    if (auto status = dropHead(); !status.ok()) return status;
  }
  return {};
}

core::Status Spool::commitChunk() {
  if (!haveChunk_ || segments_.empty()) return {};
  haveChunk_ = false;
  readOffset_ = chunkEnd_;
  return writeCheckpoint(segments_.front().seq, readOffset_);
}

core::Status Spool::writeCheckpoint(std::uint64_t seq, std::uint64_t offset) {
  std::string data;
  putU64(data, seq);
  putU64(data, offset);
  putU32(data, crc32c(data));
  const std::string tmp = (std::filesystem::path(options_.dir) / kCheckpointTmpName).string();
  const std::string path = (std::filesystem::path(options_.dir) / kCheckpointName).string();
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return core::Error{errnoText("spool: cannot write " + tmp)};
  bool ok = writeAll(fd, data.data(), data.size());
  if (ok && options_.syncFull) ok = ::fdatasync(fd) == 0;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    return core::Error{errnoText("spool: cannot write " + path)};
  }
  if (options_.syncFull) syncDir(options_.dir);
  return {};
}

}  // namespace tern::ingest
