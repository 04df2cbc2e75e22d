// SPDX-License-Identifier: Apache-2.0
#include "striping/write_intent.h"

#include <cstring>

namespace flurry {

WriteIntent::WriteIntent(uint64_t ntracts, uint64_t linger_ns, Persist persist)
    : ntracts_(ntracts), linger_ns_(linger_ns), persist_(std::move(persist)) {
  want_.assign(nchunks() * kChunk, 0);
  durable_.assign(nchunks() * kChunk, 0);
  chunks_.resize(nchunks());
}

bool WriteIntent::Ready(uint64_t t) const {
  if (!Bit(durable_, t)) return false;
  const Chunk& c = chunks_[t / kTractsPerChunk];
  if (!c.writing) return true;
  uint64_t i = t % kTractsPerChunk;
  return c.image[i / 8] >> (i % 8) & 1;  // a clearing in flight is not durable
}

bool WriteIntent::ChunkDiffers(uint64_t c) const {
  return memcmp(want_.data() + c * kChunk, durable_.data() + c * kChunk, kChunk) != 0;
}

bool WriteIntent::idle() const {
  for (uint64_t c = 0; c < chunks_.size(); ++c)
    if (chunks_[c].writing || chunks_[c].force || ChunkDiffers(c)) return false;
  return true;
}

void WriteIntent::Acquire(const uint64_t* tracts, size_t n, Done go) {
  for (size_t i = 0; i < n; ++i) {
    uint64_t t = tracts[i];
    if (t >= ntracts_) return go(-EINVAL);
  }
  for (size_t i = 0; i < n; ++i) {
    uint64_t t = tracts[i];
    hot_[t].inflight++;
    if (!Bit(want_, t)) {
      SetBit(want_, t, true);
      stats_.marks++;
      Kick(t / kTractsPerChunk);
    }
  }
  bool ready = true;
  for (size_t i = 0; i < n && ready; ++i) ready = Ready(tracts[i]);
  if (ready) return go(0);
  stats_.waits++;
  waiters_.push_back(Waiter{std::vector<uint64_t>(tracts, tracts + n), std::move(go)});
  // A chunk whose last persist failed is not rewritten on its own: this
  // waiter asks again (and fails again, at once, if the failure persists).
  for (size_t i = 0; i < n; ++i) Kick(tracts[i] / kTractsPerChunk);
}

void WriteIntent::Release(const uint64_t* tracts, size_t n, uint64_t now_ns) {
  for (size_t i = 0; i < n; ++i) {
    auto it = hot_.find(tracts[i]);
    if (it == hot_.end() || it->second.inflight == 0) continue;  // Acquire refused it
    if (--it->second.inflight == 0) it->second.idle_since = now_ns;
  }
}

void WriteIntent::Prewarm(const uint64_t* tracts, size_t n, uint64_t now_ns) {
  for (size_t i = 0; i < n; ++i) {
    uint64_t t = tracts[i];
    if (t >= ntracts_ || Bit(want_, t)) continue;
    SetBit(want_, t, true);
    stats_.marks++;
    Tract& h = hot_[t];
    if (h.inflight == 0) h.idle_since = now_ns;
  }
}

void WriteIntent::Sweep(uint64_t now_ns) {
  std::vector<uint64_t> dirty;
  for (auto it = hot_.begin(); it != hot_.end();) {
    const Tract& h = it->second;
    if (h.inflight == 0 && !h.suspect && now_ns >= h.idle_since + linger_ns_) {
      SetBit(want_, it->first, false);
      stats_.clears++;
      uint64_t c = it->first / kTractsPerChunk;
      if (dirty.empty() || dirty.back() != c) dirty.push_back(c);
      it = hot_.erase(it);
    } else {
      ++it;
    }
  }
  for (uint64_t c : dirty) Kick(c);
}

void WriteIntent::Load(std::vector<uint8_t> image) {
  image.resize(nchunks() * kChunk, 0);
  durable_ = std::move(image);
  std::fill(want_.begin(), want_.end(), 0);
  for (auto& [t, h] : hot_) SetBit(want_, t, true);
  for (uint64_t c = 0; c < chunks_.size(); ++c) {
    chunks_[c].force = true;
    Kick(c);
  }
}

void WriteIntent::Suspect(uint64_t t) {
  if (t >= ntracts_) return;
  hot_[t].suspect = true;
  if (!Bit(want_, t)) {
    SetBit(want_, t, true);
    stats_.marks++;
    Kick(t / kTractsPerChunk);
  }
}

void WriteIntent::Resolved(uint64_t t) {
  auto it = hot_.find(t);
  if (it == hot_.end()) return;
  it->second.suspect = false;  // cleared by Sweep once idle for the linger
}

void WriteIntent::Kick(uint64_t c) {
  Chunk& ch = chunks_[c];
  if (ch.writing || (!ch.force && !ChunkDiffers(c))) return;
  ch.writing = true;
  ch.force = false;
  ch.image.reset(new uint8_t[kChunk]);
  memcpy(ch.image.get(), want_.data() + c * kChunk, kChunk);
  persist_(c, ch.image.get(), [this, c](int res) { Persisted(c, res); });
}

void WriteIntent::Persisted(uint64_t c, int res) {
  Chunk& ch = chunks_[c];
  ch.writing = false;
  std::unique_ptr<uint8_t[]> image = std::move(ch.image);
  uint8_t* d = durable_.data() + c * kChunk;
  if (res == 0) {
    stats_.persists++;
    memcpy(d, image.get(), kChunk);
  } else {
    // The write may have reached some replicas: a bit is surely set on all
    // of them only if both the old and the attempted image had it.
    stats_.persist_failures++;
    for (uint32_t i = 0; i < kChunk; ++i) d[i] &= image[i];
    ch.force = true;  // the replicas may disagree on this chunk: rewrite it whole next time
  }
  if (res == 0) Kick(c);
  WakeWaiters(c, res);
}

void WriteIntent::WakeWaiters(uint64_t c, int err) {
  std::vector<std::pair<Done, int>> run;
  for (auto it = waiters_.begin(); it != waiters_.end();) {
    bool ready = true, hit = false;
    for (uint64_t t : it->tracts) {
      bool r = Ready(t);
      ready = ready && r;
      hit = hit || (!r && t / kTractsPerChunk == c);
    }
    if (ready || (err < 0 && hit)) {
      run.emplace_back(std::move(it->go), ready ? 0 : err);
      it = waiters_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto& [go, r] : run) go(r);
}

}  // namespace flurry
