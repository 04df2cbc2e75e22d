// SPDX-License-Identifier: Apache-2.0
#include "tools/crashtest/nbd_runner.h"

#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <random>

#include "nbdserver/nbd_protocol.h"
#include "tools/crashtest/checker.h"
#include "tools/crashtest/nbd_client.h"
#include "tools/crashtest/stamp.h"

namespace flurry::crashtest {
namespace {

using Clock = std::chrono::steady_clock;

double MsSince(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

class NbdCampaign {
 public:
  NbdCampaign(ProcCluster* c, const NbdOptions& o, CrashStats* st)
      : c_(c), o_(o), st_(st), rng_(o.seed), vol_(std::string("crash-") + WriteModeName(o.mode)) {}
  ~NbdCampaign() {
    if (ops_) fclose(ops_);
  }

  int Run(std::string* why) {
    char spec[256];
    snprintf(spec, sizeof spec, "VOLUME CREATE %s size=%llu replicas=2 tract_size=1M segment=8 block=%u mode=%s",
             vol_.c_str(), (unsigned long long)o_.size, o_.block, WriteModeName(o_.mode));
    if (Status s = c_->Meta(spec); !s.ok()) {
      *why = "creating the volume: " + s.ToString();
      return s.code();
    }
    if (Status s = c_->StartDisk(vol_, &disk_); !s.ok()) {
      *why = s.ToString();
      return s.code();
    }
    ops_ = fopen((c_->dir() + "/ops-" + WriteModeName(o_.mode) + ".log").c_str(), "w");
    std::vector<uint64_t> baseline;
    if (int r = Connect(&baseline, why); r < 0) return r;
    uint64_t tag = rng_() | 1;
    WorkloadOptions wo = o_.wl;
    if (!(client_->transmission_flags() & nbd::kTxSendTrim)) wo.trim_rate = 0;
    if (!(client_->transmission_flags() & nbd::kTxSendWriteZeroes)) wo.zero_rate = 0;
    wl_ = std::make_unique<Workload>(wo, o_.size, tag, rng_());
    // A fresh volume reads as zeros; whatever it holds is the baseline.
    wl_->StartGeneration(std::move(baseline));
    auto t0 = Clock::now();
    for (uint64_t k = 0; k < o_.kills; ++k) {
      int r = OneKill(k, why);
      if (r < 0) return r;
      if (st_->violating >= o_.max_violations) {
        st_->stopped_early = true;
        break;
      }
    }
    st_->seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    client_.reset();
    if (Status s = c_->StopDisk(&disk_); !s.ok()) {
      st_->errors++;
      st_->Violation("clean shutdown after the campaign: " + s.ToString());
    }
    return 0;
  }

 private:
  // Connects to the current flurry-disk and reads the whole disk.
  int Connect(std::vector<uint64_t>* seen, std::string* why) {
    Status s;
    auto cl = NbdClient::Connect(HostPort{"127.0.0.1", disk_.port}, vol_, 10000, &s);
    if (!cl) {
      *why = s.ToString() + "\n" + c_->LogTail(disk_.log);
      return cl.err();
    }
    client_ = std::move(*cl);
    if (client_->size() != o_.size) {
      *why = "export size " + std::to_string(client_->size()) + ", expected " + std::to_string(o_.size);
      return -EINVAL;
    }
    std::vector<uint8_t> buf(o_.size);
    if (int r = ReadRange(client_.get(), 0, o_.size, buf.data()); r < 0) {
      *why = "reading the whole disk back: " + errstr(r) + " " + client_->error() + "\n" + c_->LogTail(disk_.log);
      return r;
    }
    seen->resize(o_.size / kSector);
    DecodeSectors(wl_ ? wl_->tag() : 0, 0, seen->size(), buf.data(), seen->data());
    if (!wl_) {
      // Before the first generation the tag is not known yet: only zeros are expected.
      for (auto& v : *seen)
        if (v != kZero) v = kGarbage;
    }
    return 0;
  }

  void Issue(const Op& op) {
    auto alive = alive_;
    switch (op.kind) {
      case Op::kWrite: {
        std::vector<uint8_t> b(op.len);
        wl_->FillWrite(op.write, b.data());
        size_t w = op.write;
        client_->Write(op.off, op.len, b.data(), op.fua, [this, alive, w](int r) {
          if (!*alive) return;
          wl_->WriteDone(w, r);
          const WriteRec& rec = wl_->history().writes[w];
          if (ops_)
            fprintf(ops_, "gen %llu write id=%llu off=%llu len=%u epoch=%lld fua=%d res=%d\n",
                    (unsigned long long)gen_, (unsigned long long)rec.id,
                    (unsigned long long)rec.sector * kSector, rec.sectors * kSector, (long long)rec.epoch,
                    rec.fua ? 1 : 0, r);
        });
        break;
      }
      case Op::kTrim:
      case Op::kZero: {
        size_t w = op.write;
        auto done = [this, alive, w, kind = op.kind](int r) {
          if (!*alive) return;
          wl_->WriteDone(w, r);
          const WriteRec& rec = wl_->history().writes[w];
          if (ops_)
            fprintf(ops_, "gen %llu %s id=%llu off=%llu len=%u epoch=%lld res=%d\n", (unsigned long long)gen_,
                    kind == Op::kTrim ? "trim" : "zero", (unsigned long long)rec.id,
                    (unsigned long long)rec.sector * kSector, rec.sectors * kSector, (long long)rec.epoch, r);
        };
        if (op.kind == Op::kTrim) client_->Trim(op.off, op.len, done);
        else client_->WriteZeroes(op.off, op.len, !op.may_trim, done);
        break;
      }
      case Op::kFlush:
        client_->Flush([this, alive](int r) {
          if (!*alive) return;
          wl_->FlushDone(r);
          if (ops_)
            fprintf(ops_, "gen %llu flush res=%d epoch now %lld\n", (unsigned long long)gen_, r,
                    (long long)wl_->history().flushes_acked);
        });
        break;
      case Op::kRead: {
        uint64_t k = key_++;
        std::vector<uint8_t>& b = reads_[k];
        b.resize(op.len);
        client_->Read(op.off, op.len, b.data(), [this, alive, op, k](int r) {
          if (!*alive) return;
          wl_->ReadDone(op, reads_[k].data(), r);
          reads_.erase(k);
        });
        break;
      }
      case Op::kNone:
        break;
    }
  }

  int OneKill(uint64_t k, std::string* why) {
    std::string ctx = std::string(WriteModeName(o_.mode)) + " kill " + std::to_string(k);
    uint64_t reads_bad0 = wl_->read_violations(), acked0 = wl_->acked_writes(), failed0 = wl_->failed_ops();
    int run_ms = std::uniform_int_distribution<int>(o_.kill_min_ms, o_.kill_max_ms)(rng_);
    auto deadline = Clock::now() + std::chrono::milliseconds(run_ms);
    bool died = false;
    while (Clock::now() < deadline) {
      for (;;) {
        Op op = wl_->Next();
        if (op.kind == Op::kNone) break;
        Issue(op);
      }
      if (client_->Poll(1) < 0) {
        died = true;
        break;
      }
    }
    // The crash.
    c_->KillDisk(&disk_);
    int ts = -1;
    if (o_.kill_tractserver) {
      ts = std::uniform_int_distribution<int>(0, c_->servers() - 1)(rng_);
      (void)c_->KillServer(ts);
    }
    for (int i = 0; i < 200 && client_->Poll(10) == 0; ++i) {
    }
    CheckResult extra;
    if (died) {
      extra.ok = false;
      extra.details.push_back("flurry-disk dropped the connection by itself before the kill: " + client_->error());
    }
    *alive_ = false;
    alive_ = std::make_shared<bool>(true);
    client_.reset();
    reads_.clear();
    if (ops_) {
      fprintf(ops_, "gen %llu KILL (%zu writes sent, %llu flushes acknowledged)\n", (unsigned long long)gen_,
              wl_->history().writes.size(), (long long)wl_->history().flushes_acked);
      fflush(ops_);
    }
    gen_++;
    st_->acked_writes += wl_->acked_writes() - acked0;
    st_->errors += wl_->failed_ops() - failed0;
    if (ts >= 0)
      if (Status s = c_->RestartServer(ts); !s.ok()) {
        *why = "restarting tract server " + std::to_string(ts) + ": " + s.ToString();
        return s.code();
      }
    auto t0 = Clock::now();
    if (Status s = c_->StartDisk(vol_, &disk_); !s.ok()) {
      *why = ctx + ": restarting flurry-disk: " + s.ToString();
      return s.code();
    }
    st_->recovery_ms.Add(MsSince(t0));
    std::vector<uint64_t> seen;
    if (int r = Connect(&seen, why); r < 0) {
      *why = ctx + ": " + *why;
      return r;
    }
    CheckResult res = Check(wl_->history(), seen,
                            o_.mode == WriteMode::kWriteThrough ? Invariant::kWriteThrough : Invariant::kPrefix);
    if (o_.kill_tractserver && c_->servers() > 1) {
      // Reads must not depend on which replica answers: read everything
      // again with one tract server down (R=2: its rows are read from the
      // other replica) and compare with what recovery showed.
      int down = std::uniform_int_distribution<int>(0, c_->servers() - 1)(rng_);
      (void)c_->KillServer(down);
      std::vector<uint8_t> buf(o_.size);
      int r = ReadRange(client_.get(), 0, o_.size, buf.data());
      if (r < 0) {
        *why = ctx + ": reading the disk with tract server " + std::to_string(down) + " down: " + errstr(r) +
               " " + client_->error() + "\n" + c_->LogTail(disk_.log);
        return r;
      }
      std::vector<uint64_t> again(seen.size());
      DecodeSectors(wl_->tag(), 0, again.size(), buf.data(), again.data());
      uint64_t differ = 0, first = 0;
      for (size_t i = 0; i < seen.size(); ++i)
        if (again[i] != seen[i] && differ++ == 0) first = i;
      st_->replica_checks++;
      if (differ > 0) {
        st_->replica_failures++;
        res.ok = false;
        res.bad_sectors += differ;
        res.details.push_back(std::to_string(differ) + " sectors read differently with tract server " +
                              std::to_string(down) + " down (replicas differ), first sector " + std::to_string(first));
      }
      if (Status s = c_->RestartServer(down); !s.ok()) {
        *why = "restarting tract server " + std::to_string(down) + ": " + s.ToString();
        return s.code();
      }
    }
    if (uint64_t bad = wl_->read_violations() - reads_bad0; bad > 0) {
      res.ok = false;
      res.bad_sectors += bad;
      for (const auto& d : wl_->read_details()) res.details.push_back(d);
    }
    if (!extra.ok) {
      res.ok = false;
      for (const auto& d : extra.details) res.details.push_back(d);
    }
    st_->read_checks = wl_->read_checks();
    st_->read_violations = wl_->read_violations();
    if (o_.verbose || !res.ok)
      fprintf(stderr, "%s after %d ms: %zu writes, %llu acked, %lld flushes; R=%lld, last acked epoch %lld, lost %llu bytes: %s\n",
              ctx.c_str(), run_ms, wl_->history().writes.size(), (unsigned long long)(wl_->acked_writes() - acked0),
              (long long)wl_->history().flushes_acked, (long long)res.r, (long long)res.last_acked_epoch,
              (unsigned long long)res.bytes_lost, res.ok ? "ok" : "VIOLATION");
    st_->Add(res, ctx);
    wl_->StartGeneration(std::move(seen));
    return 0;
  }

  ProcCluster* c_;
  const NbdOptions& o_;
  CrashStats* st_;
  std::mt19937_64 rng_;
  std::string vol_;
  ProcCluster::Disk disk_;
  std::unique_ptr<NbdClient> client_;
  std::unique_ptr<Workload> wl_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  std::map<uint64_t, std::vector<uint8_t>> reads_;
  uint64_t key_ = 0, gen_ = 0;
  FILE* ops_ = nullptr;
};

}  // namespace

int RunNbd(ProcCluster* cluster, const NbdOptions& o, CrashStats* st, std::string* why) {
  st->mode = WriteModeName(o.mode);
  st->unit = "kills";
  NbdCampaign c(cluster, o, st);
  return c.Run(why);
}

}  // namespace flurry::crashtest
