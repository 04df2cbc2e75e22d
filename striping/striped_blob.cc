// SPDX-License-Identifier: Apache-2.0
#include "striping/striped_blob.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <memory>

#include "common/log.h"
#include "common/tract_protocol.h"

namespace flurry {

namespace {
// Fan-in of many piece completions into one callback.
struct Join {
  int pending = 1;  // held by the issuer until every piece is issued
  int err = 0;
  std::function<void(int)> done;
  void Arrive(int res) {
    if (res < 0 && err == 0) err = res;
    if (--pending == 0) done(err);
  }
};
// ForEachRun, with runs cut at tract offsets that are multiples of kMaxIo:
// every cut is chunk aligned, and a piece widened to whole chunks still fits
// one tract request.
template <typename Fn>
int ForEachIo(const StripeMap& map, uint64_t off, uint64_t len, Fn&& fn) {
  return map.ForEachRun(off, len, [&](const StripePiece& p) {
    uint64_t done = 0;
    while (done < p.length) {
      StripePiece q = p;
      q.tract_off += done;
      q.buf_off += done;
      uint64_t cut = (q.tract_off / tractproto::kMaxIo + 1) * tractproto::kMaxIo;
      q.length = std::min<uint64_t>(p.length - done, cut - q.tract_off);
      fn(q);
      done += q.length;
    }
  });
}
constexpr uint64_t kC = tractproto::kChunkSize;

bool BitAt(const std::vector<uint8_t>& bm, uint64_t i) { return i / 8 < bm.size() && (bm[i / 8] >> (i % 8) & 1); }
}  // namespace

StripedBlob::StripedBlob(FdsClient* fds, BlobRef blob, StripeMap map, Options opts)
    : fds_(fds), blob_(blob), map_(std::move(map)), opts_(opts) {
  // One replica cannot differ from itself; without a loop there is no sweep.
  if (blob_.replicas < 2 || opts_.loop == nullptr) return;
  intent_ = std::make_unique<WriteIntent>(
      map_.num_tracts(), static_cast<uint64_t>(opts_.dirty_linger_ms) * 1000000,
      [this](uint64_t chunk, const uint8_t* data, Done done) { PersistIntent(chunk, data, std::move(done)); });
  SweepTick();
}

StripedBlob::~StripedBlob() {
  *alive_ = false;
  if (intent_) opts_.loop->CancelTimer(sweep_timer_);
  if (gate_timer_armed_) opts_.loop->CancelTimer(gate_timer_);
  if (refence_armed_) opts_.loop->CancelTimer(refence_timer_);
}

void StripedBlob::SweepTick() {
  uint64_t now = Loop::NowNs();
  intent_->Sweep(now);
  RepairNext(now);
  uint64_t period_ms = std::clamp<uint64_t>(opts_.dirty_linger_ms / 4, 10, 1000);
  sweep_timer_ = opts_.loop->AddTimer(period_ms * 1000000, [this] { SweepTick(); });
}

void StripedBlob::PersistIntent(uint64_t chunk, const uint8_t* data, Done done) {
  // Our own copy: the request may outlive this blob (and WriteIntent's image).
  SendPersist(chunk, std::make_shared<std::vector<uint8_t>>(data, data + WriteIntent::kChunk), std::move(done));
}

void StripedBlob::SendPersist(uint64_t chunk, std::shared_ptr<std::vector<uint8_t>> copy, Done done) {
  // Asked again here: a clear by a writer that lost the volume would
  // overwrite the new writer's bits; while the lease is overdue, wait.
  int g = GateCheck();
  if (g == -EAGAIN && opts_.loop) {
    return WaitForGate([this, chunk, copy, done = std::move(done)]() mutable {
      SendPersist(chunk, std::move(copy), std::move(done));
    });
  }
  if (g != 0) return done(g);
  uint64_t byte = chunk * WriteIntent::kChunk;
  fds_->Write(blob_, kIntentTractBase + byte / blob_.tract_size,
              static_cast<uint32_t>(byte % blob_.tract_size), WriteIntent::kChunk, copy->data(), 0,
              [alive = alive_, copy, done = std::move(done)](int r) {
                if (*alive) done(r);
              });
}

namespace {
// Errors after which the replicas may differ (the request reached some of
// them): not a bad argument every replica refused alike, not a fence, not
// our own shutdown.
bool MayDiverge(int err) {
  return err != -EINVAL && err != -EOPNOTSUPP && err != -EPERM && err != -ESHUTDOWN;
}
}  // namespace

std::string StripedBlob::BlobName() const {
  char b[40];
  snprintf(b, sizeof b, "%016llx%016llx", (unsigned long long)blob_.hi, (unsigned long long)blob_.lo);
  return b;
}

void StripedBlob::Fenced(int err) {
  if (err != -EPERM || fenced_) return;
  fenced_ = true;
  FLOG_ERROR("blob %s: another writer fenced this volume (a newer flurry-disk opened it); "
             "every later write here fails", BlobName().c_str());
}

int StripedBlob::GateCheck() {
  if (fenced_) return -EPERM;
  if (!opts_.gate) return 0;
  int g = opts_.gate->Check(Loop::NowNs());
  if (g == -EPERM) {
    fenced_ = true;
    FLOG_ERROR("blob %s: %s lost (another writer holds this volume); every later write here fails",
               BlobName().c_str(), opts_.gate->what());
  }
  return g;
}

void StripedBlob::WaitForGate(std::function<void()> retry) {
  if (gate_waiters_.empty()) {
    gate_wait_since_ns_ = gate_logged_ns_ = Loop::NowNs();
    FLOG_INFO("blob %s: writes wait for the %s (overdue)", BlobName().c_str(), opts_.gate->what());
  }
  gate_waiters_.push_back(std::move(retry));
  if (!gate_timer_armed_ && opts_.loop) ArmGateTimer();
}

void StripedBlob::ArmGateTimer() {
  gate_timer_armed_ = true;
  gate_timer_ = opts_.loop->AddTimer(20 * 1000000ull, [this] {
    gate_timer_armed_ = false;
    GateTick();
  });
}

void StripedBlob::GateTick() {
  uint64_t now = Loop::NowNs();
  if (GateCheck() == -EAGAIN) {
    if (now - gate_logged_ns_ >= 5000000000ull) {
      gate_logged_ns_ = now;
      FLOG_WARN("blob %s: %zu writes have waited %.0f s for the %s (is flurry-meta reachable?)",
                BlobName().c_str(), gate_waiters_.size(), (now - gate_wait_since_ns_) / 1e9, opts_.gate->what());
    }
    return ArmGateTimer();
  }
  auto waiters = std::move(gate_waiters_);
  gate_waiters_.clear();
  for (auto& w : waiters) w();  // each checks again: runs, fails, or waits anew
}

void StripedBlob::WithIntent(uint64_t off, uint64_t len, std::function<void(Done)> op, Done done) {
  // Once fenced, stay fenced: a reconnect must not get our writes past it.
  // Without the write lease, wait for it (or fail for good once it is lost).
  if (int g = GateCheck(); g != 0) {
    if (g != -EAGAIN || !opts_.loop) return done(g);
    return WaitForGate([this, off, len, op = std::move(op), done = std::move(done)]() mutable {
      WithIntent(off, len, std::move(op), std::move(done));
    });
  }
  if (!intent_) {
    return op([this, alive = alive_, done = std::move(done)](int r) {
      if (*alive) Fenced(r);
      done(r);
    });
  }
  auto tracts = std::make_shared<std::vector<uint64_t>>();
  int r = map_.ForEachPiece(off, len, [&](const StripePiece& p) {
    if (tracts->empty() || tracts->back() != p.tract) tracts->push_back(p.tract);
  });
  if (r < 0) return done(r);
  if (tracts->size() > 1) {
    std::sort(tracts->begin(), tracts->end());
    tracts->erase(std::unique(tracts->begin(), tracts->end()), tracts->end());
  }
  if (!tracts->empty() && tracts->back() >= intent_->ntracts()) return done(-EINVAL);
  // A tract being repaired takes no new writes until its replicas agree.
  for (uint64_t t : *tracts) {
    auto g = gated_.find(t);
    if (g == gated_.end()) continue;
    g->second.push_back([this, off, len, op = std::move(op), done = std::move(done)]() mutable {
      WithIntent(off, len, std::move(op), std::move(done));
    });
    return;
  }
  // A tract about to be marked brings the rest of its segment along: the
  // striping spreads nearby IO over the segment's tracts, and the bits share
  // one persisted chunk, so this costs no extra write.
  uint32_t seg = map_.params().segment_tracts;
  if (seg > 1 && seg <= 1024) {
    bool cold = false;
    for (uint64_t t : *tracts) cold = cold || !intent_->Ready(t);
    if (cold) {
      std::vector<uint64_t> warm;
      for (uint64_t t : *tracts) {
        // The segment, clipped to t's bitmap chunk (the one that is persisted).
        uint64_t c0 = t / WriteIntent::kTractsPerChunk * WriteIntent::kTractsPerChunk;
        uint64_t s0 = std::max(t / seg * seg, c0);
        uint64_t s1 = std::min<uint64_t>({t / seg * seg + seg, intent_->ntracts(), c0 + WriteIntent::kTractsPerChunk});
        if (!warm.empty() && warm.back() >= s0) continue;  // same segment as the last
        for (uint64_t u = s0; u < s1; ++u) warm.push_back(u);
      }
      intent_->Prewarm(warm.data(), warm.size(), Loop::NowNs());
    }
  }
  intent_->Acquire(tracts->data(), tracts->size(),
                   [this, alive = alive_, tracts, op = std::move(op), done = std::move(done)](int res) mutable {
                     // issued: the IO went out, so a failure may have reached
                     // some replicas only.
                     auto release = [this, alive, tracts, done = std::move(done)](int res2, bool issued) {
                       if (*alive) {
                         Fenced(res2);
                         if (res2 < 0 && issued && MayDiverge(res2))
                           for (uint64_t t : *tracts) MarkSuspect(t, res2);
                         intent_->Release(tracts->data(), tracts->size(), Loop::NowNs());
                         if (repair_.active && !repair_.started && intent_->inflight(repair_.tract) == 0)
                           StartRepair();
                       }
                       done(res2);
                     };
                     if (res < 0) return release(res, false);
                     IssueGated(std::move(op), std::move(release));
                   });
}

void StripedBlob::IssueGated(std::function<void(Done)> op, std::function<void(int, bool)> release) {
  int g = GateCheck();
  if (g == -EAGAIN && opts_.loop) {
    return WaitForGate([this, op = std::move(op), release = std::move(release)]() mutable {
      IssueGated(std::move(op), std::move(release));
    });
  }
  if (g != 0) return release(g, false);
  op([release = std::move(release)](int r2) { release(r2, true); });
}

void StripedBlob::MarkSuspect(uint64_t t, int err) {
  if (suspects_.insert(t).second)
    FLOG_WARN("blob %s tract %llu: a write failed (%s); its replicas may differ until it is resynced",
              BlobName().c_str(), (unsigned long long)t, errstr(err).c_str());
  intent_->Suspect(t);
}

// Background repair of one suspect tract at a time: hold new writes to it,
// let those in flight finish, compare and copy, release the writes.
void StripedBlob::RepairNext(uint64_t now) {
  if (repair_.active || suspects_.empty() || now < repair_.not_before_ns || GateCheck() != 0) return;
  auto it = suspects_.upper_bound(repair_.tract);
  if (it == suspects_.end()) it = suspects_.begin();
  repair_.active = true;
  repair_.started = false;
  repair_.tract = *it;
  gated_[repair_.tract];
  if (intent_->inflight(repair_.tract) == 0) StartRepair();
}

void StripedBlob::StartRepair() {
  repair_.started = true;
  uint64_t t = repair_.tract;
  ResyncTract(t, [this, alive = alive_, t](int r) {
    if (!*alive) return;
    if (r == 0) {
      suspects_.erase(t);
      intent_->Resolved(t);
      rstats_.repaired++;
      FLOG_INFO("blob %s tract %llu: replicas resynced", BlobName().c_str(), (unsigned long long)t);
      repair_.not_before_ns = 0;
    } else {
      rstats_.repair_failures++;
      repair_.not_before_ns = Loop::NowNs() + 1000000000ull;  // try again (this or the next) in 1 s
    }
    repair_.active = repair_.started = false;
    auto waiting = std::move(gated_[t]);
    gated_.erase(t);
    for (auto& w : waiting) w();
  }, /*deadline_ms=*/10000);
}

struct StripedBlob::RecoverState {
  std::vector<uint8_t> image;
  std::vector<uint64_t> marked, unresolved;
  size_t next = 0, running = 0;
  int err = 0;
  uint64_t t0 = 0;
  uint32_t deadline_ms = 10000;  // per comparison; 1 (one attempt) after a failure
  Done done;
};

void StripedBlob::Recover(Done done) {
  if (opts_.read_only) return RecoverIntent(std::move(done));
  // 0. Fence the blob: requests a dead writer left queued at a server must
  //    not land after the resync (or over our newer writes). Best effort:
  //    a server that is down has no such requests.
  fds_->Fence(blob_, [this, alive = alive_, done = std::move(done)](int r) mutable {
    if (!*alive) return;
    rstats_.fence_error = r;
    if (r == -EPERM) {
      // A server holds a newer writer generation for the blob than ours.
      Fenced(r);
      return done(r);
    }
    if (r < 0) {
      FLOG_WARN("blob %s: fencing earlier writers failed on some tract server (%s); "
                "continuing, and fencing again every 2 s until every server has it",
                BlobName().c_str(), errstr(r).c_str());
      RetryFenceLater();
    }
    RecoverIntent(std::move(done));
  }, /*deadline_ms=*/3000);
}

// A server that missed the FENCE (down, slow) has not recorded our writer
// generation until our first write there: fence again until every server
// has it, so that window closes soon after the server is back.
void StripedBlob::RetryFenceLater() {
  if (!opts_.loop || refence_armed_) return;
  refence_armed_ = true;
  refence_timer_ = opts_.loop->AddTimer(2000 * 1000000ull, [this] {
    refence_armed_ = false;
    if (fenced_) return;
    fds_->Fence(blob_, [this, alive = alive_](int r) {
      if (!*alive) return;
      rstats_.fence_error = r;
      if (r == -EPERM) return Fenced(r);
      if (r < 0) return RetryFenceLater();
      FLOG_INFO("blob %s: fenced on every tract server now", BlobName().c_str());
    }, /*deadline_ms=*/3000);
  });
}

void StripedBlob::RecoverIntent(Done done) {
  if (!intent_) return done(0);
  auto st = std::make_shared<RecoverState>();
  st->t0 = Loop::NowNs();
  st->done = std::move(done);
  st->image.assign(intent_->nchunks() * WriteIntent::kChunk, 0);
  // 1. The bitmap, from any one replica: a bit was set on every replica
  //    before its tract was written, and cleared only after the tract's
  //    writes were durable everywhere (a failed write keeps it), so any
  //    replica tells the truth.
  auto j = std::make_shared<Join>();
  j->done = [this, alive = alive_, st](int r) {
    if (!*alive) return;
    if (r < 0) return st->done(r);
    for (uint64_t t = 0; t < intent_->ntracts(); ++t)
      if (BitAt(st->image, t)) st->marked.push_back(t);
    rstats_.marked = st->marked.size();
    if (opts_.read_only) {
      rstats_.seconds = (Loop::NowNs() - st->t0) / 1e9;
      return st->done(0);
    }
    if (!st->marked.empty())
      FLOG_INFO("blob %s: comparing the replicas of %zu tracts marked in the write-intent bitmap",
                BlobName().c_str(), st->marked.size());
    RecoverPump(st);
  };
  // Pieces of up to 1 MiB inside one tract.
  uint64_t bytes = st->image.size();
  for (uint64_t b = 0; b < bytes;) {
    uint64_t n = std::min<uint64_t>({bytes - b, 1u << 20, blob_.tract_size - b % blob_.tract_size});
    j->pending++;
    fds_->Read(blob_, kIntentTractBase + b / blob_.tract_size, static_cast<uint32_t>(b % blob_.tract_size),
               static_cast<uint32_t>(n), st->image.data() + b, [j](int r, std::vector<uint8_t>) { j->Arrive(r); });
    b += n;
  }
  j->Arrive(0);
}

// 2. Resync the marked tracts, a few at a time; 3. then let the bits go.
// A tract that cannot be compared now (a replica unreachable) stays marked
// and becomes a suspect, repaired in the background: the volume opens.
void StripedBlob::RecoverPump(std::shared_ptr<RecoverState> st) {
  while (st->running < 8 && st->next < st->marked.size()) {
    uint64_t t = st->marked[st->next++];
    st->running++;
    ResyncTract(t, [this, alive = alive_, st, t](int r) {
      if (!*alive) return;
      st->running--;
      if (r < 0) {
        st->unresolved.push_back(t);
        st->deadline_ms = 1;
      }
      RecoverPump(st);
    }, st->deadline_ms);
  }
  if (st->running > 0 || st->next < st->marked.size()) return;
  if (!st->done) return;  // already finished
  rstats_.seconds = (Loop::NowNs() - st->t0) / 1e9;
  rstats_.unresolved = st->unresolved.size();
  for (uint64_t t : st->unresolved) {
    suspects_.insert(t);
    intent_->Suspect(t);  // before Load: its bit is never cleared meanwhile
  }
  if (!st->unresolved.empty())
    FLOG_WARN("blob %s: %zu marked tracts could not be compared (a replica is unreachable); "
              "they stay marked and are resynced in the background",
              BlobName().c_str(), st->unresolved.size());
  intent_->Load(std::move(st->image));
  Done fin = std::move(st->done);
  st->done = nullptr;
  fin(0);
}

std::string StripedBlob::recover_report() const {
  if (!intent_) return "";
  char b[300];
  if (opts_.read_only) {
    snprintf(b, sizeof b, "read-only: %llu tracts marked in the write-intent bitmap, not compared",
             (unsigned long long)rstats_.marked);
    return b;
  }
  if (rstats_.marked == 0) {
    snprintf(b, sizeof b, "write-intent bitmap clean, nothing to compare (%.3f s)", rstats_.seconds);
    return b;
  }
  snprintf(b, sizeof b,
           "%llu tracts marked in the write-intent bitmap, %llu with replicas that differed, %llu chunks copied, "
           "%llu not comparable yet (resynced in the background), %.3f s",
           (unsigned long long)rstats_.marked, (unsigned long long)rstats_.differing,
           (unsigned long long)rstats_.chunks_copied, (unsigned long long)rstats_.unresolved, rstats_.seconds);
  return b;
}

void StripedBlob::ResyncTract(uint64_t tract, Done done, uint32_t deadline_ms) {
  fds_->ChunkSums(blob_, tract, [this, alive = alive_, tract, done = std::move(done)](
                                    int r, std::vector<FdsClient::ReplicaSums> reps) mutable {
    if (!*alive) return;
    if (r < 0) {
      FLOG_WARN("blob %s tract %llu: cannot compare replicas: %s", BlobName().c_str(),
                (unsigned long long)tract, errstr(r).c_str());
      return done(r);
    }
    uint32_t n = blob_.tract_size / static_cast<uint32_t>(kC);
    auto differs = [&](uint32_t c) {
      for (size_t k = 1; k < reps.size(); ++k) {
        if (BitAt(reps[k].bitmap, c) != BitAt(reps[0].bitmap, c)) return true;
        if (reps[k].sums[c] != reps[0].sums[c]) return true;
      }
      return false;
    };
    auto j = std::make_shared<Join>();
    uint64_t planned = 0;
    const uint32_t max_run = tractproto::kMaxIo / static_cast<uint32_t>(kC);
    for (uint32_t c = 0; c < n;) {
      if (!differs(c)) { ++c; continue; }
      uint32_t e = c;
      while (e < n && e - c < max_run && differs(e)) ++e;
      planned += e - c;
      j->pending++;
      CopyRun(tract, c, e, [j](int r2) { j->Arrive(r2); });
      c = e;
    }
    if (planned > 0)
      FLOG_INFO("blob %s tract %llu: replicas differed in %llu chunks; copying them from one "
                "readable replica to all", BlobName().c_str(),
                (unsigned long long)tract, (unsigned long long)planned);
    j->done = [this, alive, planned, done = std::move(done)](int r2) {
      if (*alive && r2 == 0 && planned > 0) {
        rstats_.differing++;
        rstats_.chunks_copied += planned;
      }
      done(r2);
    };
    j->Arrive(0);
  }, deadline_ms);
}

void StripedBlob::CopyRun(uint64_t tract, uint32_t c0, uint32_t c1, Done done) {
  auto buf = std::make_shared<std::vector<uint8_t>>(static_cast<size_t>(c1 - c0) * kC);
  fds_->Read(blob_, tract, static_cast<uint32_t>(c0 * kC), static_cast<uint32_t>(buf->size()), buf->data(),
             [this, alive = alive_, tract, c0, c1, buf, done = std::move(done)](int r, std::vector<uint8_t> bm) {
               if (!*alive) return;
               if (r < 0) return done(r);
               // A writer that lost the volume must not copy over the new
               // writer's data (repairs retry later).
               if (int g = GateCheck(); g != 0) return done(g);
               // Allocated chunks are written to every replica; holes are
               // trimmed on every replica.
               auto j = std::make_shared<Join>();
               j->done = [buf, done = std::move(done)](int r2) { done(r2); };
               for (uint32_t c = c0; c < c1;) {
                 bool alloc = BitAt(bm, c - c0);
                 uint32_t e = c;
                 while (e < c1 && BitAt(bm, e - c0) == alloc) ++e;
                 j->pending++;
                 uint32_t off = static_cast<uint32_t>(c * kC), len = static_cast<uint32_t>((e - c) * kC);
                 if (alloc)
                   fds_->Write(blob_, tract, off, len, buf->data() + (c - c0) * kC, 0, [j](int r2) { j->Arrive(r2); });
                 else
                   fds_->Zero(blob_, tract, off, len, false, [j](int r2) { j->Arrive(r2); });
                 c = e;
               }
               j->Arrive(0);
             });
}

void StripedBlob::Read(uint64_t off, uint64_t len, uint8_t* buf, Done done) {
  auto j = std::make_shared<Join>();
  j->done = std::move(done);
  int r = ForEachIo(map_, off, len, [&](const StripePiece& p) {
    j->pending++;
    fds_->Read(blob_, p.tract, static_cast<uint32_t>(p.tract_off), static_cast<uint32_t>(p.length),
               buf + p.buf_off, [j](int res, std::vector<uint8_t>) { j->Arrive(res); });
  });
  j->Arrive(r < 0 ? r : 0);
}

void StripedBlob::Write(uint64_t off, uint64_t len, const uint8_t* buf, Done done) {
  WithIntent(off, len, [this, off, len, buf](Done d) { WriteNow(off, len, buf, std::move(d)); }, std::move(done));
}

void StripedBlob::WriteNow(uint64_t off, uint64_t len, const uint8_t* buf, Done done) {
  auto j = std::make_shared<Join>();
  j->done = std::move(done);
  int r = ForEachIo(map_, off, len, [&](const StripePiece& p) {
    j->pending++;
    fds_->Write(blob_, p.tract, static_cast<uint32_t>(p.tract_off), static_cast<uint32_t>(p.length),
                buf + p.buf_off, 0, [j](int res) { j->Arrive(res); });
  });
  j->Arrive(r < 0 ? r : 0);
}

void StripedBlob::Zero(uint64_t off, uint64_t len, bool keep_alloc, Done done) {
  WithIntent(off, len, [this, off, len, keep_alloc](Done d) { ZeroNow(off, len, keep_alloc, std::move(d)); },
             std::move(done));
}

void StripedBlob::ZeroNow(uint64_t off, uint64_t len, bool keep_alloc, Done done) {
  // Merge the pieces per tract first: a large trim touches each tract in a
  // few contiguous ranges, not once per stripe unit.
  std::map<uint64_t, std::vector<std::pair<uint64_t, uint64_t>>> per_tract;
  int r = map_.ForEachPiece(off, len, [&](const StripePiece& p) {
    auto& v = per_tract[p.tract];
    if (!v.empty() && v.back().second == p.tract_off) v.back().second += p.length;
    else v.emplace_back(p.tract_off, p.tract_off + p.length);
  });
  if (r < 0) return done(r);
  auto j = std::make_shared<Join>();
  j->done = std::move(done);
  for (auto& [tract, ranges] : per_tract) {
    for (auto [a, b] : ranges) {
      // FdsClient::Zero handles partial chunks at the ends (as merged writes).
      for (uint64_t s = a; s < b;) {
        uint64_t cut = (s / tractproto::kMaxIo + 1) * tractproto::kMaxIo;
        uint64_t n = std::min<uint64_t>(b, cut) - s;
        j->pending++;
        fds_->Zero(blob_, tract, static_cast<uint32_t>(s), static_cast<uint32_t>(n), keep_alloc,
                   [j](int res) { j->Arrive(res); });
        s += n;
      }
    }
  }
  j->Arrive(0);
}

void StripedBlob::Allocation(uint64_t off, uint64_t len, ExtentsDone done) {
  constexpr unsigned max_pieces = 64;
  // Collect up to max_pieces pieces, ask each tract for its bitmap, then
  // stitch extents together in virtual order.
  struct Piece {
    StripePiece p;
    std::vector<uint8_t> bitmap;
  };
  auto pieces = std::make_shared<std::vector<Piece>>();
  constexpr uint64_t kC = tractproto::kChunkSize;
  int r = ForEachIo(map_, off, len, [&](const StripePiece& p) {
    if (pieces->size() < max_pieces) pieces->push_back({p, {}});
  });
  if (r < 0) return done(r, {});
  auto j = std::make_shared<Join>();
  j->done = [pieces, done = std::move(done)](int res) {
    if (res < 0) return done(res, {});
    std::vector<BlockExtent> out;
    for (const Piece& pc : *pieces) {
      uint64_t pos = pc.p.tract_off, end = pc.p.tract_off + pc.p.length;
      uint64_t c0 = pos / kC;
      while (pos < end) {
        uint64_t c = pos / kC;
        bool alloc = (pc.bitmap.size() > (c - c0) / 8) && (pc.bitmap[(c - c0) / 8] >> ((c - c0) % 8) & 1);
        uint64_t next = std::min(end, (c + 1) * kC);
        uint32_t flags = alloc ? 0 : (kExtentHole | kExtentZero);
        if (!out.empty() && out.back().flags == flags) out.back().length += next - pos;
        else out.push_back({next - pos, flags});
        pos = next;
      }
    }
    done(0, std::move(out));
  };
  for (Piece& pc : *pieces) {
    j->pending++;
    fds_->Read(blob_, pc.p.tract, static_cast<uint32_t>(pc.p.tract_off), static_cast<uint32_t>(pc.p.length),
               nullptr, [j, bm = &pc.bitmap](int res, std::vector<uint8_t> bitmap) {
                 if (res == 0) *bm = std::move(bitmap);
                 j->Arrive(res);
               });
  }
  j->Arrive(0);
}

}  // namespace flurry
