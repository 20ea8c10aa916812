#pragma once
// The durable spool: an append-only log of records in the data dir that holds what the store
// cannot take right now (it refuses writes or falls behind). A record in the spool is as durable
// as one in the store (same sync policy), so it can be acknowledged; the pipeline replays the
// spool into the store, oldest first, once the store accepts writes again.
//
// Layout: <dir>/<seq>.log segments (seq: 20 digits, rising) of frames
//   [u32 length][u32 crc32c(payload)][payload = encodeRecord(record)]   (little endian)
// and <dir>/checkpoint: (seq, offset) of the first record not yet committed to the store.
// New records always go to a segment this process created, so a torn last frame left by a crash
// is only ever at the end of an old segment, where reading stops.
//
// Not thread-safe: the pipeline's writer thread is the only user.
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"
#include "storage/record.h"

namespace tern::ingest {

// CRC-32C (Castagnoli), as used by iSCSI and ext4.
std::uint32_t crc32c(std::string_view data);

// A compact binary encoding of a record, appended to `out`.
void encodeRecord(const storage::Record& record, std::string& out);
// Decodes exactly `bytes` (trailing bytes are an error). False on any malformation.
bool decodeRecord(std::string_view bytes, storage::Record& out);

inline constexpr std::size_t kFrameHeaderBytes = 8;
// Bounds a frame's claimed length, so a corrupt header cannot make a reader allocate gigabytes.
inline constexpr std::uint32_t kMaxFrameBytes = 512u * 1024 * 1024;

// Appends one frame holding `payload` to `out`.
void appendFrame(std::string_view payload, std::string& out);

enum class FrameStatus { kOk, kIncomplete, kCorrupt };
struct FrameView {
  FrameStatus status = FrameStatus::kIncomplete;
  std::string_view payload;  // kOk only
  std::size_t size = 0;      // bytes the frame takes, header included (kOk only)
};
// Parses the frame at the start of `data`. kIncomplete: more bytes are needed (or, at the end of
// a file, a torn tail); kCorrupt: a bad length or checksum.
FrameView parseFrame(std::string_view data);

struct SpoolOptions {
  std::string dir;                                   // created when missing
  bool syncFull = false;                             // fdatasync every append (storage.sync = full)
  std::uint64_t maxBytes = 1024ull * 1024 * 1024;    // quota over all segment files
  std::uint64_t segmentBytes = 64ull * 1024 * 1024;  // roll to a new segment beyond this
};

class Spool {
 public:
  explicit Spool(SpoolOptions options);
  ~Spool();
  Spool(const Spool&) = delete;
  Spool& operator=(const Spool&) = delete;

  // Creates the directory, finds existing segments and the checkpoint.
  core::Status open();

  // True when nothing is waiting to be replayed and no segment is left on disk.
  bool empty() const { return segments_.empty(); }
  // Bytes of all segment files, replayed or not (what the quota counts).
  std::uint64_t bytes() const { return bytes_; }
  std::size_t segmentCount() const { return segments_.size(); }

  // Appends `records` as frames in one write and syncs per policy. Writes nothing when the quota
  // would be exceeded (sets *full) or on an I/O error; either way the caller keeps the records.
  core::Status append(std::span<const storage::Record> records, bool* full = nullptr);

  // Reads up to `maxRecords` records from the replay position, all from the oldest segment.
  // Segments already replayed are deleted on the way. An empty `out` with empty() true means
  // the spool is drained. Reading again without commitChunk() returns the same records.
  core::Status readChunk(std::size_t maxRecords, std::vector<storage::Record>& out);
  // The records of the last readChunk are committed to the store: advance the checkpoint.
  core::Status commitChunk();

 private:
  struct Segment {
    std::uint64_t seq = 0;
    std::uint64_t size = 0;
  };
  std::string segmentPath(std::uint64_t seq) const;
  core::Status openActive();
  void sealActive();
  core::Status writeCheckpoint(std::uint64_t seq, std::uint64_t offset);
  core::Status dropHead();
  core::Status fillReadBuffer(std::uint64_t offset, std::size_t need);

  SpoolOptions options_;
  std::vector<Segment> segments_;  // oldest first; the last may be the active one
  std::uint64_t bytes_ = 0;
  std::uint64_t nextSeq_ = 1;
  int activeFd_ = -1;             // the segment appends go to (always segments_.back() when open)
  std::uint64_t readOffset_ = 0;  // replay position in segments_.front() (the checkpoint)
  std::uint64_t chunkEnd_ = 0;    // where the last readChunk stopped
  bool haveChunk_ = false;
  // Read buffer over the head segment.
  int readFd_ = -1;
  std::uint64_t readFdSeq_ = 0;
  std::string readBuffer_;
  std::uint64_t readBufferOffset_ = 0;  // file offset of readBuffer_[0]
  std::string writeBuffer_;
  std::string scratch_;
};

}  // namespace tern::ingest
