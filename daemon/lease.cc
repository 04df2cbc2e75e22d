// SPDX-License-Identifier: Apache-2.0
#include "daemon/lease.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include "common/kv_text.h"
#include "common/log.h"
#include "common/loop.h"

namespace flurry {
namespace {

std::string ReadFirstLine(const std::string& path) {
  std::ifstream in(path);
  std::string l;
  std::getline(in, l);
  return l;
}

// Field 3 (state) and 22 (start time, clock ticks since boot) of
// /proc/PID/stat; false when the process does not exist.
bool ProcStat(const std::string& pid, char* state, std::string* start) {
  std::string l = ReadFirstLine("/proc/" + pid + "/stat");
  size_t rp = l.rfind(')');
  if (l.empty() || rp == std::string::npos) return false;
  std::istringstream in(l.substr(rp + 1));
  std::vector<std::string> f;
  std::string w;
  while (in >> w) f.push_back(w);
  if (f.size() < 20) return false;
  *state = f[0][0];
  *start = f[19];
  return true;
}

std::string Host() {
  char h[256] = {0};
  gethostname(h, sizeof h - 1);
  std::string s(h);
  for (char& c : s)
    if (!isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-' && c != '_') c = '_';
  return s.empty() ? "localhost" : s.substr(0, 64);
}

std::string BootId() {
  std::string b = ReadFirstLine("/proc/sys/kernel/random/boot_id");
  b.erase(std::remove(b.begin(), b.end(), '-'), b.end());
  return b.empty() ? "noboot" : b.substr(0, 16);
}

std::string PidNs() {
  char b[64] = {0};
  ssize_t n = readlink("/proc/self/ns/pid", b, sizeof b - 1);
  std::string s(b, n > 0 ? static_cast<size_t>(n) : 0);
  std::string d;
  for (char c : s)
    if (isdigit(static_cast<unsigned char>(c))) d += c;
  return d.empty() ? "0" : d;
}

// Lease validity keeps counting while the machine is suspended.
uint64_t BootNs() {
  timespec ts;
  clock_gettime(CLOCK_BOOTTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

bool Transient(int err) { return err != -EBUSY && err != -ENOENT && err != -EINVAL && err != -ESTALE; }

}  // namespace

std::string VolumeLease::SelfHolder() {
  char state = 0;
  std::string start;
  std::string pid = std::to_string(getpid());
  if (!ProcStat(pid, &state, &start)) start = "0";
  return DiskHolder{Host(), BootId(), PidNs(), pid, start}.Format();
}

int VolumeLease::LocalHolderAlive(const std::string& holder) {
  auto h = DiskHolder::Parse(holder);
  // Another host, boot or pid namespace: its pid means nothing here.
  if (!h || h->host != Host() || h->boot != BootId() || h->pidns != PidNs()) return -1;
  char state = 0;
  std::string start;
  if (!ProcStat(h->pid, &state, &start)) return 0;
  if (start != h->start || state == 'Z' || state == 'X') return 0;  // pid reused, or exited
  return 1;
}

LeaseRenewer::LeaseRenewer(const HostPort& meta)
    // Safety does not depend on this timeout (validity counts from the send
    // time), so it need not shrink with the ttl; ACQUIRE syncs meta's state.
    : mc_(meta, 3000) {
  thread_ = std::thread([this] { Run(); });
}

LeaseRenewer::~LeaseRenewer() {
  {
    std::lock_guard<std::mutex> g(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void LeaseRenewer::Add(VolumeLease* l) {
  {
    std::lock_guard<std::mutex> g(mu_);
    leases_.push_back(l);
  }
  cv_.notify_all();
}

void LeaseRenewer::Remove(VolumeLease* l) {
  std::unique_lock<std::mutex> g(mu_);
  leases_.erase(std::remove(leases_.begin(), leases_.end(), l), leases_.end());
  cv_.wait(g, [&] { return std::find(round_.begin(), round_.end(), l) == round_.end(); });
}

void LeaseRenewer::Run() {
  // Leases due within this much of the first one ride along in its round:
  // renewing a little early costs nothing (validity counts from the send).
  constexpr uint64_t kSlackNs = 100000000;
  std::unique_lock<std::mutex> g(mu_);
  for (;;) {
    if (stop_) return;
    uint64_t now = BootNs(), first = UINT64_MAX;
    for (VolumeLease* l : leases_) first = std::min(first, l->next_ns_);
    if (first == UINT64_MAX) {
      cv_.wait(g);
      continue;
    }
    if (first > now) {
      cv_.wait_for(g, std::chrono::nanoseconds(first - now));
      continue;
    }
    std::vector<std::string> reqs;
    for (VolumeLease* l : leases_)
      if (l->next_ns_ <= now + kSlackNs) {
        round_.push_back(l);
        reqs.push_back(l->RenewRequest());
      }
    g.unlock();
    uint64_t t_send = BootNs();
    std::vector<MetaReply> reps = mc_.CallMany(reqs);
    uint64_t t_done = BootNs();
    g.lock();
    for (size_t i = 0; i < round_.size(); ++i) round_[i]->OnRenewed(reps[i], t_send, t_done);
    round_.clear();
    cv_.notify_all();  // Remove() waits for the round
  }
}

VolumeLease::VolumeLease(LeaseRenewer* renewer, std::string volume, Options opts)
    : renewer_(renewer), volume_(std::move(volume)), opts_(opts) {}

Result<std::unique_ptr<VolumeLease>> VolumeLease::Acquire(LeaseRenewer* renewer, const std::string& volume,
                                                          Options opts, Status* why) {
  std::unique_ptr<VolumeLease> l(new VolumeLease(renewer, volume, opts));
  MetaClient* mc = renewer->client();
  const std::string self = SelfHolder();
  auto sleep = opts.sleep ? opts.sleep : [](uint32_t ms) {
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    return true;
  };
  auto fail = [&](int err, const std::string& msg) {
    *why = Status::Error(err, msg);
    return Result<std::unique_ptr<VolumeLease>>::error(err);
  };
  uint64_t t_start = Loop::NowNs();
  uint64_t t_first = 0;  // send time of the first ACQUIRE: a grant came after it
  int64_t budget_ms = opts.wait_ms;  // -1 until the holder's remaining ttl is known
  bool told = false;
  int transient = 0;
  for (;;) {
    uint64_t t_send = BootNs();
    if (t_first == 0) t_first = t_send;
    MetaReply rep = mc->Call("LEASE ACQUIRE " + volume + " " + std::to_string(opts.ttl_ms) + " " + self);
    if (rep.status.ok()) {
      unsigned long long gen = 0;
      if (rep.lines.empty() || sscanf(rep.lines[0].c_str(), "gen %llu", &gen) != 1)
        return fail(-EIO, "malformed LEASE reply from flurry-meta");
      l->gen_ = gen;
      l->valid_until_ns_ = t_send + static_cast<uint64_t>(opts.ttl_ms) * 750000;
      break;
    }
    int err = rep.status.code();
    // EBUSY without a lease in it is flurry-meta's "too many connections".
    bool held = err == -EBUSY && rep.status.message().rfind("lease held:", 0) == 0;
    if (Transient(err) || (err == -EBUSY && !held)) {
      // flurry-meta unreachable or slow: an earlier ACQUIRE of ours may
      // have been granted meanwhile (then the next reply names us).
      if (++transient > 10)
        return fail(err, "write lease of volume '" + volume + "': " + rep.status.ToString());
      if (!sleep(500)) return fail(-EINTR, "interrupted while taking the write lease of volume '" + volume + "'");
      continue;
    }
    if (err != -EBUSY) return fail(err, "write lease of volume '" + volume + "': " + rep.status.message());
    const std::string& msg = rep.status.message();
    std::string holder = KvField(msg, "holder"), gen = KvField(msg, "gen");
    uint64_t remaining = strtoull(KvField(msg, "remaining_ms").c_str(), nullptr, 10);
    if (holder == self) {
      // Ours, from an ACQUIRE whose reply was lost: valid from the first send.
      l->gen_ = strtoull(gen.c_str(), nullptr, 10);
      l->valid_until_ns_ = t_first + static_cast<uint64_t>(opts.ttl_ms) * 750000;
      break;
    }
    int alive = LocalHolderAlive(holder);
    if (alive == 0) {
      // Its process is gone (SIGKILL, crash): nothing can write with it any
      // more, so its lease need not lapse first.
      FLOG_INFO("volume '%s': the previous writer (%s) is gone; breaking its write lease (generation %s)",
                volume.c_str(), holder.c_str(), gen.c_str());
      MetaReply b = mc->Call("LEASE BREAK " + volume + " " + gen);
      if (!b.status.ok() && b.status.code() != -ESTALE) {
        if (!Transient(b.status.code()) || ++transient > 10)
          return fail(b.status.code(), "breaking the write lease of volume '" + volume + "': " + b.status.message());
        if (!sleep(500)) return fail(-EINTR, "interrupted while taking the write lease of volume '" + volume + "'");
      }
      continue;
    }
    auto busy = [&](const std::string& extra) {
      return fail(-EBUSY, "volume '" + volume + "' is being served by " +
                              (alive == 1 ? "flurry-disk pid " + DiskHolder::Parse(holder)->pid + " on this host" : holder) +
                              " (it holds the volume's write lease, generation " + gen + ")" + extra);
    };
    if (alive == 1 && opts.wait_ms < 0)
      return busy("; stop it first (`flurry serve --stop " + volume + "`, or kill that pid)");
    if (budget_ms < 0) budget_ms = static_cast<int64_t>(remaining) + 1000;
    uint64_t waited_ms = (Loop::NowNs() - t_start) / 1000000;
    uint64_t step = std::min<uint64_t>(remaining + 50, 500);
    if (static_cast<int64_t>(waited_ms + std::min<uint64_t>(remaining, step)) > budget_ms)
      return busy("; its lease has " + std::to_string(remaining) + " ms left after waiting " +
                  std::to_string(waited_ms) + " ms");
    if (!told) {
      told = true;
      FLOG_INFO("volume '%s': write lease held by %s for another %llu ms; waiting up to %lld ms for it to lapse",
                volume.c_str(), holder.c_str(), (unsigned long long)remaining, (long long)budget_ms);
    }
    if (!sleep(static_cast<uint32_t>(step)))
      return fail(-EINTR, "interrupted while waiting for the write lease of volume '" + volume + "'");
  }
  l->next_ns_ = BootNs() + static_cast<uint64_t>(opts.ttl_ms) * 1000000 / 4;
  renewer->Add(l.get());
  return l;
}

std::string VolumeLease::RenewRequest() const {
  return "LEASE RENEW " + volume_ + " " + std::to_string(gen_);
}

void VolumeLease::OnRenewed(const MetaReply& rep, uint64_t t_send, uint64_t t_done) {
  const uint64_t ttl_ns = static_cast<uint64_t>(opts_.ttl_ms) * 1000000;
  if (rep.status.ok()) {
    valid_until_ns_ = t_send + ttl_ns * 3 / 4;
    next_ns_ = t_send + ttl_ns / 4;
    if (late_) FLOG_INFO("volume '%s': write lease renewed again", volume_.c_str());
    late_ = false;
    return;
  }
  if (rep.status.code() == -ESTALE || rep.status.code() == -ENOENT) {
    lost_ = true;
    next_ns_ = UINT64_MAX;
    FLOG_ERROR("volume '%s': write lease lost (%s): another writer took the volume over; every later write "
               "of this flurry-disk to it fails", volume_.c_str(), rep.status.message().c_str());
    return;
  }
  late_ = true;
  if (t_done - last_warn_ns_ >= 5000000000ull) {
    last_warn_ns_ = t_done;
    FLOG_WARN("volume '%s': cannot renew the write lease: %s (writes wait once it is %s)", volume_.c_str(),
              rep.status.ToString().c_str(), BootNs() < valid_until_ns_ ? "due" : "overdue: they are waiting now");
  }
  next_ns_ = t_done + std::min<uint64_t>(ttl_ns / 4, 500000000ull);
}

int VolumeLease::Check(uint64_t /*now_ns*/) const {
  if (lost_.load(std::memory_order_relaxed)) return -EPERM;
  return BootNs() < valid_until_ns_.load(std::memory_order_relaxed) ? 0 : -EAGAIN;
}

void VolumeLease::Release() {
  if (released_) return;
  released_ = true;
  renewer_->Remove(this);         // no renewal of ours runs after this (a no-op if never added)
  if (lost_ || gen_ == 0) return;  // lost, or never granted (Acquire failed)
  valid_until_ns_ = 0;
  MetaReply rep = renewer_->client()->Call("LEASE RELEASE " + volume_ + " " + std::to_string(gen_));
  if (!rep.status.ok())
    FLOG_WARN("volume '%s': could not release the write lease (%s); it lapses in %u ms", volume_.c_str(),
              rep.status.ToString().c_str(), opts_.ttl_ms);
}

VolumeLease::~VolumeLease() { Release(); }

}  // namespace flurry
