// SPDX-License-Identifier: Apache-2.0
//
// WriteIntent: the write-intent bitmap of a replicated blob — one bit per
// tract, set durably before any write or zero is issued to that tract, and
// cleared lazily once the tract has been idle for a while. After a crash of
// the writer, only tracts whose bit is set can hold replicas that differ
// (an R-way write that reached some replicas only); StripedBlob::Recover
// compares and resyncs exactly those (docs/ARCHITECTURE.md "Replica resync").
//
// Contract
// - Loop thread only. Pure bookkeeping: the owner supplies Persist, which
//   must write one 4 KiB chunk of the bitmap durably on every replica, and
//   calls Sweep() periodically.
// - Acquire(tracts, go): counts each tract as written-to until the matching
//   Release(); go(0) runs (possibly synchronously) once every tract's bit is
//   durable on every replica and no clearing of it is in flight. go(err) if
//   persisting the bit failed. The owner calls Release() after go in both
//   cases, when the write is finished.
// - A bit is cleared only after its tract had no write in flight for
//   linger_ns (Sweep). A chunk has at most one Persist in flight; a change
//   made meanwhile is written after it completes.
// - After a failed Persist the bits of that chunk are taken as durable only
//   where both the old and the attempted image had them (conservative: a
//   later write sets them again).
// - Suspect(t): the tract's replicas may differ while the writer lives (a
//   write or zero to it failed, or Recover could not compare it): its bit
//   is never cleared until Resolved(t), after the owner resynced it.
// - Load(image): the state found on the replicas at open, after the owner
//   has resynced every tract marked in it (or made it a suspect); the other
//   bits are cleared lazily, and every chunk is rewritten once (the image
//   came from one replica; the others may hold stale set bits).
#pragma once

#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <unordered_map>
#include <vector>

namespace flurry {

class WriteIntent {
 public:
  static constexpr uint32_t kChunk = 4096;                // bytes per persisted chunk
  static constexpr uint64_t kTractsPerChunk = kChunk * 8ull;
  using Done = std::function<void(int res)>;
  using Persist = std::function<void(uint64_t chunk, const uint8_t* data, Done done)>;

  struct Stats {
    uint64_t persists = 0, persist_failures = 0, waits = 0, marks = 0, clears = 0;
  };

  WriteIntent(uint64_t ntracts, uint64_t linger_ns, Persist persist);

  uint64_t ntracts() const { return ntracts_; }
  uint64_t nchunks() const { return (ntracts_ + kTractsPerChunk - 1) / kTractsPerChunk; }

  void Acquire(const uint64_t* tracts, size_t n, Done go);
  void Release(const uint64_t* tracts, size_t n, uint64_t now_ns);
  // Marks tracts likely to be written soon (no write counted, cleared after
  // the linger like any other): they ride along with the next persist of
  // their chunk, so their first write need not wait for one of its own.
  void Prewarm(const uint64_t* tracts, size_t n, uint64_t now_ns);
  // Clears the bits of tracts idle since before now_ns - linger_ns.
  void Sweep(uint64_t now_ns);
  // image: nchunks() * kChunk bytes (shorter = zero-padded).
  void Load(std::vector<uint8_t> image);
  void Suspect(uint64_t t);
  void Resolved(uint64_t t);
  bool suspect(uint64_t t) const {
    auto it = hot_.find(t);
    return it != hot_.end() && it->second.suspect;
  }
  // Writes to t between Acquire and Release.
  uint32_t inflight(uint64_t t) const {
    auto it = hot_.find(t);
    return it == hot_.end() ? 0 : it->second.inflight;
  }
  // Durable on every replica, and no clearing in flight.
  bool Ready(uint64_t t) const;
  bool Wanted(uint64_t t) const { return Bit(want_, t); }
  size_t marked_tracts() const { return hot_.size(); }
  size_t waiting() const { return waiters_.size(); }
  bool idle() const;  // no persist in flight and nothing left to write
  const Stats& stats() const { return stats_; }

 private:
  struct Tract {
    uint32_t inflight = 0;
    uint64_t idle_since = 0;
    bool suspect = false;
  };
  struct Chunk {
    bool writing = false;
    bool force = false;  // write even if want == durable (after Load)
    std::unique_ptr<uint8_t[]> image;  // what the write in flight writes
  };
  struct Waiter {
    std::vector<uint64_t> tracts;
    Done go;
  };
  static bool Bit(const std::vector<uint8_t>& v, uint64_t t) { return v[t / 8] >> (t % 8) & 1; }
  static void SetBit(std::vector<uint8_t>& v, uint64_t t, bool on) {
    if (on) v[t / 8] |= static_cast<uint8_t>(1u << (t % 8));
    else v[t / 8] &= static_cast<uint8_t>(~(1u << (t % 8)));
  }
  bool ChunkDiffers(uint64_t c) const;
  void Kick(uint64_t c);
  void Persisted(uint64_t c, int res);
  void WakeWaiters(uint64_t failed_chunk, int err);

  uint64_t ntracts_;
  uint64_t linger_ns_;
  Persist persist_;
  std::vector<uint8_t> want_, durable_;  // nchunks * kChunk bytes each
  std::vector<Chunk> chunks_;
  std::unordered_map<uint64_t, Tract> hot_;  // tracts whose bit is wanted
  std::list<Waiter> waiters_;
  Stats stats_;
};

}  // namespace flurry
