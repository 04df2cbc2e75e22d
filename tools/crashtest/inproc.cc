// SPDX-License-Identifier: Apache-2.0
#include "tools/crashtest/inproc.h"

#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <random>

#include "common/loop.h"
#include "epochs/engine.h"
#include "epochs/memory_blob_io.h"
#include "tools/crashtest/checker.h"
#include "tools/crashtest/stamp.h"

namespace flurry::crashtest {
namespace {

uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// One engine with its own blob and loop. Destroyed engine first (it may
// cancel timers or touch the blob), then the blob (dropping queued writes
// and their callbacks unrun: that is the crash), then the loop.
struct Instance {
  std::unique_ptr<Loop> loop;
  std::unique_ptr<MemoryBlobIo> blob;
  std::unique_ptr<Engine> engine;
  Instance() = default;
  Instance(Instance&&) = default;
  Instance& operator=(Instance&& o) {
    Reset();
    loop = std::move(o.loop);
    blob = std::move(o.blob);
    engine = std::move(o.engine);
    return *this;
  }
  ~Instance() { Reset(); }
  void Reset() {
    engine.reset();
    blob.reset();
    loop.reset();
  }
};

class StateRunner {
 public:
  StateRunner(const InprocOptions& o, const VolumeInfo& vol, uint64_t tag, uint64_t seed)
      : o_(o), vol_(vol), rng_(seed), wl_(o.wl, vol.size, tag, Mix(seed)) {}

  // Builds an engine over `image` (or a zeroed blob when empty). 0 or -errno.
  int Make(std::vector<uint8_t> image, Instance* in, std::string* why) {
    auto loop = Loop::Create(64);
    if (!loop) { *why = "io_uring: " + errstr(loop.err()); return loop.err(); }
    in->loop = std::move(*loop);
    if (image.empty()) in->blob = std::make_unique<MemoryBlobIo>(EngineBlobSize(vol_), rng_());
    else in->blob = std::make_unique<MemoryBlobIo>(std::move(image), rng_());
    // Reads complete later, reordered with writes, as over the network
    // (log mode acknowledges partial writes before their base arrives).
    in->blob->set_async_reads(true);
    EngineOptions eo;
    eo.loop = in->loop.get();
    if (o_.checkpoint_ms) eo.checkpoint_interval_ms = o_.checkpoint_ms;
    if (o_.max_buffered) eo.max_buffered_bytes = o_.max_buffered;
    Status st;
    auto e = o_.make_engine ? o_.make_engine(vol_, in->blob.get(), eo, &st) : MakeEngine(vol_, in->blob.get(), eo, &st);
    if (!e) { *why = st.ToString(); return e.err(); }
    in->engine = std::move(*e);
    return 0;
  }

  // Runs the loop and completes blob writes until done() or a hang.
  template <typename Pred>
  bool Drive(Instance& in, Pred done) {
    // RunOnce() costs a system call (tens of microseconds): only every so
    // often, and when no blob write is left to complete.
    int idle = 0;
    for (uint64_t i = 1; !done(); ++i) {
      if (in.blob->Step()) {
        idle = 0;
        if (i % 64 == 0) in.loop->RunOnce(0);
        continue;
      }
      if (++idle > 3000) return false;  // ~3 s with nothing queued: hung
      in.loop->RunOnce(idle == 1 ? 0 : 1);
    }
    return true;
  }

  int Open(Instance& in) {
    int res = 1;
    in.engine->Open([&res](int r) { res = r; });
    if (!Drive(in, [&] { return res != 1; })) return -ETIMEDOUT;
    return res;
  }

  // Reads the whole disk through the engine and decodes it.
  int ReadAll(Instance& in, std::vector<uint64_t>* out) {
    std::vector<uint8_t> buf(vol_.size);
    uint32_t chunk = std::min<uint32_t>(in.engine->info().max_io, 1u << 20);
    int pending = 0, err = 0;
    for (uint64_t off = 0; off < vol_.size; off += chunk) {
      uint32_t len = static_cast<uint32_t>(std::min<uint64_t>(chunk, vol_.size - off));
      pending++;
      in.engine->Read(off, len, buf.data() + off, [&](int r) {
        pending--;
        if (r < 0) err = r;
      });
    }
    if (!Drive(in, [&] { return pending == 0; })) return -ETIMEDOUT;
    if (err < 0) return err;
    out->resize(vol_.size / kSector);
    DecodeSectors(wl_.tag(), 0, out->size(), buf.data(), out->data());
    return 0;
  }

  // True if the engine answers nothing more although requests are waiting
  // and the blob has nothing left to complete (given ~200 ms for timers).
  bool Stalled(Instance& in) {
    uint64_t before = wl_.replies();
    for (int i = 0; i < 200; ++i) {
      in.loop->RunOnce(i == 0 ? 0 : 1);
      if (wl_.replies() != before || in.blob->pending() > 0) return false;
    }
    return true;
  }

  // Runs the workload for up to `actions` steps on `in`. Returns false if
  // the engine stopped making progress (*stall says how).
  bool RunWorkload(Instance& in, uint32_t actions, std::string* stall) {
    std::uniform_real_distribution<double> u(0, 1);
    for (uint32_t a = 0; a < actions; ++a) {
      double x = u(rng_);
      if (x < 0.5) {
        Op op = wl_.Next();
        if (op.kind != Op::kNone) {
          Issue(in, op);
          continue;
        }
        if (in.blob->pending() == 0 && Stalled(in)) {
          *stall = "the engine stopped answering: " + std::to_string(wl_.writes_in_flight()) +
                   " writes" + (wl_.flush_in_flight() ? " and a flush" : "") + (quiescing_ ? " and a quiesce" : "") +
                   " wait for replies, no blob write is outstanding, and nothing happened for 200 ms";
          return false;
        }
      } else if (x < 0.5 + o_.quiesce_rate && !quiescing_) {
        quiescing_ = true;
        uint64_t token = wl_.BarrierStart();
        in.engine->Quiesce([this, alive = alive_, token](int r) {
          if (!*alive) return;
          quiescing_ = false;
          wl_.BarrierDone(token, r);
        });
        continue;
      }
      in.blob->Step();
      if (a % 64 == 63) in.loop->RunOnce(0);
    }
    return true;
  }

  void Issue(Instance& in, const Op& op) {
    auto alive = alive_;
    switch (op.kind) {
      case Op::kWrite: {
        size_t w = op.write;
        std::vector<uint8_t>& b = bufs_[key_];
        b.resize(op.len);
        wl_.FillWrite(w, b.data());
        in.engine->Write(op.off, op.len, b.data(), op.fua, [this, alive, w, k = key_++](int r) {
          if (!*alive) return;
          wl_.WriteDone(w, r);
          bufs_.erase(k);
        });
        break;
      }
      case Op::kTrim:
      case Op::kZero: {
        size_t w = op.write;
        auto done = [this, alive, w](int r) {
          if (*alive) wl_.WriteDone(w, r);
        };
        if (op.kind == Op::kTrim) in.engine->Trim(op.off, op.len, done);
        else in.engine->Zero(op.off, op.len, op.may_trim, false, done);
        break;
      }
      case Op::kFlush:
        in.engine->Flush([this, alive](int r) {
          if (*alive) wl_.FlushDone(r);
        });
        break;
      case Op::kRead: {
        std::vector<uint8_t>& b = bufs_[key_];
        b.resize(op.len);
        in.engine->Read(op.off, op.len, b.data(), [this, alive, op, k = key_++](int r) {
          if (!*alive) return;
          wl_.ReadDone(op, bufs_[k].data(), r);
          bufs_.erase(k);
        });
        break;
      }
      case Op::kNone:
        break;
    }
  }

  // Starts a recovery from `image`, crashes it after a random number of
  // blob completions (if it is still running then), recovers from that and
  // checks the invariant. *what is empty, or the violation.
  int CrashDuringRecovery(std::vector<uint8_t> image, Invariant inv, CrashStats* st, std::string* what,
                          std::string* why) {
    Instance part;
    if (int r = Make(std::move(image), &part, why); r < 0) return r;
    int res = 1;
    part.engine->Open([&res](int r) { res = r; });
    uint32_t budget = std::uniform_int_distribution<uint32_t>(0, 4)(rng_);
    for (uint32_t i = 0; i < budget && res == 1; ++i)
      if (!part.blob->Step()) {
        part.loop->RunOnce(0);
        if (part.blob->pending() == 0) break;
      }
    if (res != 1 || part.blob->pending() == 0) return 0;  // recovery wrote nothing more to crash in
    std::vector<uint8_t> img = part.blob->CrashImage(rng_);
    part.Reset();
    Instance again;
    if (int r = Make(std::move(img), &again, why); r < 0) return r;
    std::vector<uint64_t> seen;
    int e = Open(again);
    if (e == 0) e = ReadAll(again, &seen);
    st->recovery_crash_checks++;
    if (e < 0) {
      st->recovery_crash_failures++;
      *what = "recovery after a crash during recovery failed: " + errstr(e);
      return 0;
    }
    CheckResult c = Check(wl_.history(), seen, inv, 2);
    if (!c.ok) {
      st->recovery_crash_failures++;
      *what = "after a crash during recovery: " + (c.details.empty() ? std::string("violation") : c.details[0]);
    }
    return 0;
  }

  // One chain of `crashes` crash states. Returns 0 or a harness error
  // (-EOPNOTSUPP: no engine for the mode).
  int Run(uint64_t index, int crashes, CrashStats* st, std::string* why) {
    Instance live;
    int r = Make({}, &live, why);
    if (r < 0) return r;
    std::string ctx0 = "chain " + std::to_string(index);
    if (int e = Open(live); e < 0) {
      CheckResult bad;
      bad.ok = false;
      bad.details.push_back("Open() of a fresh blob failed: " + errstr(e));
      st->Add(bad, ctx0);
      return 0;
    }
    for (int g = 0; g < crashes; ++g) {
      std::string ctx = ctx0 + " crash " + std::to_string(g);
      uint32_t crash_at = std::uniform_int_distribution<uint32_t>(0, o_.max_actions)(rng_);
      uint64_t reads_bad0 = wl_.read_violations();
      std::string stall;
      bool live_ok = RunWorkload(live, crash_at, &stall);
      std::vector<uint8_t> image = live.blob->CrashImage(rng_);
      *alive_ = false;  // callbacks of the dead engine are ignored from here on
      alive_ = std::make_shared<bool>(true);
      quiescing_ = false;
      live.Reset();
      bufs_.clear();
      st->acked_writes += wl_.acked_writes() - acked0_;
      acked0_ = wl_.acked_writes();
      st->errors += wl_.failed_ops() - failed0_;
      failed0_ = wl_.failed_ops();

      // Half the time, also crash in the middle of a recovery from this image.
      std::vector<uint8_t> image_copy;
      if (rng_() & 1) image_copy = image;
      Instance rec;
      if ((r = Make(std::move(image), &rec, why)) < 0) return r;
      CheckResult res;
      std::vector<uint64_t> seen;
      int e = Open(rec);
      if (e == 0) e = ReadAll(rec, &seen);
      if (e < 0) {
        res.ok = false;
        res.details.push_back("recovery (Open, then reading the disk) failed: " + errstr(e));
        st->Add(res, ctx);
        return 0;
      }
      res = Check(wl_.history(), seen, o_.mode == WriteMode::kWriteThrough ? Invariant::kWriteThrough
                                                                           : Invariant::kPrefix);
      if (!live_ok) {
        res.ok = false;
        res.details.push_back(stall + " (crashed there)");
      }
      if (uint64_t bad = wl_.read_violations() - reads_bad0; bad > 0) {
        res.ok = false;
        res.bad_sectors += bad;
        for (const auto& d : wl_.read_details()) res.details.push_back(d);
      }
      st->read_checks += wl_.read_checks() - reads0_;
      reads0_ = wl_.read_checks();
      st->read_violations += wl_.read_violations() - reads_bad0;
      Invariant inv = o_.mode == WriteMode::kWriteThrough ? Invariant::kWriteThrough : Invariant::kPrefix;
      if (!image_copy.empty()) {
        std::string what;
        if ((r = CrashDuringRecovery(std::move(image_copy), inv, st, &what, why)) < 0) return r;
        if (!what.empty()) {
          res.ok = false;
          res.details.push_back(what);
        }
      }
      // Crash again right after recovery: the recovery must be idempotent.
      {
        Instance again;
        if ((r = Make(rec.blob->CrashImage(rng_), &again, why)) < 0) return r;
        std::vector<uint64_t> seen2;
        int e2 = Open(again);
        if (e2 == 0) e2 = ReadAll(again, &seen2);
        st->idempotence_checks++;
        uint64_t diff = 0, first = 0;
        if (e2 == 0)
          for (uint64_t s = 0; s < seen.size(); ++s)
            if (seen[s] != seen2[s] && diff++ == 0) first = s;
        if (e2 < 0 || diff > 0) {
          st->idempotence_failures++;
          res.ok = false;
          res.bad_sectors += diff;
          res.details.push_back(
              e2 < 0 ? "second recovery (crash right after the first) failed: " + errstr(e2)
                     : "recovery not idempotent: " + std::to_string(diff) +
                           " sectors differ after a crash right after recovery; first: sector " +
                           std::to_string(first) + " read write #" + std::to_string(seen[first]) +
                           " after the first recovery and #" + std::to_string(seen2[first]) + " after the second");
        }
      }
      if (o_.verbose || !res.ok)
        fprintf(stderr, "%s: %zu writes, %lld flushes, crash after %u actions: R=%lld, last acked epoch %lld, %s\n",
                ctx.c_str(), wl_.history().writes.size(), (long long)wl_.history().flushes_acked, crash_at,
                (long long)res.r, (long long)res.last_acked_epoch, res.ok ? "ok" : "VIOLATION");
      st->Add(res, ctx);
      wl_.StartGeneration(std::move(seen));
      live = std::move(rec);
    }
    return 0;
  }

 private:
  const InprocOptions& o_;
  VolumeInfo vol_;
  std::mt19937_64 rng_;
  Workload wl_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  bool quiescing_ = false;
  std::map<uint64_t, std::vector<uint8_t>> bufs_;  // IO buffers by request key
  uint64_t key_ = 0;
  uint64_t acked0_ = 0, failed0_ = 0, reads0_ = 0;
};

}  // namespace

int RunInproc(const InprocOptions& o, CrashStats* st, std::string* why) {
  VolumeInfo vol;
  vol.name = "crashtest";
  vol.size = o.size;
  vol.tract_size = 1u << 20;
  vol.replicas = 2;
  vol.segment_tracts = 8;
  vol.block_size = o.block;
  vol.mode = o.mode;
  Status vs = ValidateVolume(vol);
  if (!vs.ok()) {
    *why = vs.ToString();
    return -EINVAL;
  }
  st->mode = WriteModeName(o.mode);
  st->unit = "crash states";
  auto t0 = std::chrono::steady_clock::now();
  uint64_t tag = Mix(o.seed ^ 0x5354414d50ull) | 1;
  for (uint64_t i = 0; st->crashes < o.states; ++i) {
    uint64_t index = o.only_chain != ~0ull ? o.only_chain : i;
    StateRunner sr(o, vol, tag, Mix(o.seed * 0x100000001b3ull + index));
    size_t before = st->first_violations.size();
    int crashes = static_cast<int>(std::min<uint64_t>(o.generations, o.states - st->crashes));
    uint64_t done0 = st->crashes;
    int r = sr.Run(index, crashes, st, why);
    if (r < 0) return r;
    for (size_t k = before; k < st->first_violations.size(); ++k)
      st->first_violations[k] += "  [reproduce with the same options plus --only-chain " + std::to_string(index) +
                                 "]";
    if (o.only_chain != ~0ull || st->crashes == done0) break;
    if (st->violating >= o.max_violations) {
      st->stopped_early = true;
      break;
    }
  }
  st->seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return 0;
}

}  // namespace flurry::crashtest
