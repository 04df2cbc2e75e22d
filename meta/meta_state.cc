// SPDX-License-Identifier: Apache-2.0
#include "meta/meta_state.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <ctime>
#include <fstream>
#include <random>
#include <set>
#include <sstream>

#include "common/checksum.h"
#include "common/log.h"
#include "common/units.h"
#include "meta/tract_sync_client.h"

namespace flurry {
namespace {
uint64_t NowMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}
std::vector<std::string> Split(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> v;
  std::string w;
  while (in >> w) v.push_back(w);
  return v;
}
// A whole decimal u64; false for empty, trailing junk or overflow.
bool ParseU64(const std::string& t, uint64_t* v) {
  char* end = nullptr;
  errno = 0;
  *v = strtoull(t.c_str(), &end, 10);
  return errno == 0 && !t.empty() && *end == 0;
}
const char* ErrName(int e) {
  switch (-e) {
    case ENOENT: return "ENOENT";
    case EEXIST: return "EEXIST";
    case EINVAL: return "EINVAL";
    case ENOSPC: return "ENOSPC";
    case EBUSY: return "EBUSY";
    case ESTALE: return "ESTALE";
    default: return "EIO";
  }
}
}  // namespace

std::string MetaState::Ok(const std::vector<std::string>& lines) {
  std::string s = "OK " + std::to_string(lines.size()) + "\n";
  for (const auto& l : lines) s += l + "\n";
  return s;
}

std::string MetaState::Err(int e, const std::string& msg) {
  return std::string("ERR ") + ErrName(e) + " " + msg + "\n";
}

Result<std::unique_ptr<MetaState>> MetaState::Open(Options opts, Status* why) {
  std::unique_ptr<MetaState> m(new MetaState(std::move(opts)));
  if (mkdir(m->opts_.dir.c_str(), 0700) < 0 && errno != EEXIST) {
    *why = Status::Error(-errno, "cannot create " + m->opts_.dir + ": " + errstr(-errno));
    return Result<std::unique_ptr<MetaState>>::error(why->code());
  }
  Status s = m->Load();
  if (!s.ok()) {
    *why = s;
    return Result<std::unique_ptr<MetaState>>::error(s.code());
  }
  std::random_device rd;
  char inc[17];
  snprintf(inc, sizeof inc, "%08x%08x", static_cast<unsigned>(rd()), static_cast<unsigned>(rd()));
  m->incarnation_ = inc;
  return m;
}

uint64_t MetaState::TokenSeq(const std::string& token) const {
  // Only a token of this incarnation names a point in this grant sequence.
  uint64_t seq = 0;
  if (token.size() > incarnation_.size() + 1 && token.compare(0, incarnation_.size(), incarnation_) == 0 &&
      token[incarnation_.size()] == ':' && ParseU64(token.substr(incarnation_.size() + 1), &seq) &&
      seq <= gen_seq_)
    return seq;
  return kNoGens;
}

std::vector<std::string> MetaState::GenLines(const std::string& token) const {
  uint64_t since = TokenSeq(token);
  bool full = since == kNoGens;
  std::vector<std::string> out;
  out.push_back("gens " + incarnation_ + ":" + std::to_string(gen_seq_) + (full ? " full" : " delta"));
  for (const auto& [name, l] : leases_) {
    if (l.gen == 0 || (!full && l.granted_seq <= since)) continue;
    auto v = volumes_.find(name);
    if (v == volumes_.end()) continue;
    out.push_back(v->second.IdHex() + " " + std::to_string(l.gen));
  }
  return out;
}

Status MetaState::Load() {
  std::ifstream in(opts_.dir + "/state");
  if (!in) return Status::Ok();  // a new cluster
  std::string body, line, sumline;
  std::vector<std::string> lines;
  while (std::getline(in, line)) lines.push_back(line);
  if (lines.empty() || lines[0] != "flurry-meta-state 1")
    return Status::Error(-EINVAL, opts_.dir + "/state is not a flurry-meta state file");
  sumline = lines.back();
  lines.pop_back();
  for (const auto& l : lines) body += l + "\n";
  char want[32];
  snprintf(want, sizeof want, "checksum %016" PRIx64, Checksum(body.data(), body.size()));
  if (sumline != want)
    return Status::Error(-EIO, opts_.dir + "/state fails its checksum (corrupt); refusing to start");
  for (size_t i = 1; i < lines.size(); ++i) {
    auto w = Split(lines[i]);
    if (w.empty()) continue;
    if (w[0] == "next_blob" && w.size() == 2) next_blob_ = strtoull(w[1].c_str(), nullptr, 10);
    else if (w[0] == "server" && w.size() == 4) {
      Server s{w[1], w[2], w[3], NowMs(), false};
      servers_[s.uuid] = s;
    } else if (w[0] == "tlt" && w.size() == 2) {
      tlt_version_ = strtoull(w[1].c_str(), nullptr, 10);
    } else if (w[0] == "row") {
      std::vector<std::pair<std::string, bool>> row;
      for (size_t j = 1; j < w.size(); ++j)
        row.emplace_back(w[j][0] == '*' ? w[j].substr(1) : w[j], w[j][0] == '*');
      rows_.push_back(std::move(row));
    } else if (w[0] == "volume") {
      auto v = VolumeInfo::Parse(lines[i].substr(7));
      if (!v) return Status::Error(-EINVAL, "bad volume line in state: " + lines[i]);
      volumes_[v->name] = *v;
    } else if (w[0] == "lease") {
      // lease <volume> <gen> <ttl_ms> [<holder>]: held until its ttl has
      // passed since this start, unless the holder renews it.
      Lease l;
      if ((w.size() != 4 && w.size() != 5) || !ParseU64(w[2], &l.gen) || !ParseU64(w[3], &l.ttl_ms) ||
          (w.size() == 5 && (l.gen == 0 || l.ttl_ms < 100 || l.ttl_ms > 3600000)))
        return Status::Error(-EINVAL, "bad lease line in state: " + lines[i]);
      if (w.size() == 5) {
        l.holder = w[4];
        l.expires_ms = NowMs() + l.ttl_ms;
      }
      l.granted_seq = ++gen_seq_;
      leases_[w[1]] = l;
    }
  }
  FLOG_INFO("loaded state: %zu servers, TLT v%" PRIu64 " with %zu rows, %zu volumes",
            servers_.size(), tlt_version_, rows_.size(), volumes_.size());
  return Status::Ok();
}

Status MetaState::Save() {
  std::string body = "flurry-meta-state 1\n";
  body += "next_blob " + std::to_string(next_blob_) + "\n";
  for (const auto& [id, s] : servers_) body += "server " + s.uuid + " " + s.addr + " " + s.zone + "\n";
  body += "tlt " + std::to_string(tlt_version_) + "\n";
  for (const auto& row : rows_) {
    body += "row";
    for (const auto& [u, rec] : row) body += " " + std::string(rec ? "*" : "") + u;
    body += "\n";
  }
  for (const auto& [n, v] : volumes_) body += "volume " + v.Serialize() + "\n";
  for (const auto& [n, l] : leases_)
    body += "lease " + n + " " + std::to_string(l.gen) + " " + std::to_string(l.ttl_ms) +
            (l.holder.empty() ? "" : " " + l.holder) + "\n";
  char sum[32];
  snprintf(sum, sizeof sum, "checksum %016" PRIx64 "\n", Checksum(body.data(), body.size()));
  body += sum;
  std::string tmp = opts_.dir + "/state.tmp", dst = opts_.dir + "/state";
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return Status::Error(-errno, "cannot write " + tmp);
  bool ok = write(fd, body.data(), body.size()) == static_cast<ssize_t>(body.size()) && fsync(fd) == 0;
  close(fd);
  if (!ok || rename(tmp.c_str(), dst.c_str()) < 0) return Status::Error(-EIO, "cannot persist meta state");
  int dfd = open(opts_.dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) { fsync(dfd); close(dfd); }
  return Status::Ok();
}

Status MetaState::BuildTlt() {
  std::vector<const Server*> live;
  for (const auto& [id, s] : servers_) if (!s.dead) live.push_back(&s);
  if (live.empty()) return Status::Error(-ENOSPC, "no tract servers have registered yet");
  size_t width = std::min<size_t>(opts_.tlt_width, live.size());
  size_t L = std::max<size_t>(live.size() * opts_.rows_per_server, 8);
  std::set<std::string> zones;
  for (auto* s : live) zones.insert(s->zone);
  bool distinct_zones = zones.size() >= width && zones.size() > 1;
  std::mt19937_64 rng(12345);  // deterministic layout
  rows_.clear();
  for (size_t i = 0; i < L; ++i) {
    std::vector<std::pair<std::string, bool>> row;
    std::set<std::string> used_zones;
    // The first replica rotates so that every server leads equally often.
    const Server* first = live[i % live.size()];
    row.emplace_back(first->uuid, false);
    used_zones.insert(first->zone);
    std::vector<const Server*> rest = live;
    std::shuffle(rest.begin(), rest.end(), rng);
    for (const Server* s : rest) {
      if (row.size() == width) break;
      if (s == first) continue;
      bool in_row = std::any_of(row.begin(), row.end(), [&](auto& e) { return e.first == s->uuid; });
      if (in_row || (distinct_zones && used_zones.count(s->zone))) continue;
      row.emplace_back(s->uuid, false);
      used_zones.insert(s->zone);
    }
    rows_.push_back(std::move(row));
  }
  tlt_version_++;
  FLOG_INFO("built TLT v%" PRIu64 ": %zu rows of %zu servers over %zu live servers", tlt_version_,
            rows_.size(), width, live.size());
  return Save();
}

void MetaState::CheckHeartbeats() {
  std::lock_guard<std::mutex> g(mu_);
  uint64_t now = NowMs();
  for (auto& [id, s] : servers_) {
    if (s.dead || now - s.last_heartbeat_ms < opts_.heartbeat_timeout_ms) continue;
    s.dead = true;
    FLOG_WARN("tract server %s (%s) missed heartbeats for %" PRIu64 " ms: replacing it",
              s.uuid.c_str(), s.addr.c_str(), now - s.last_heartbeat_ms);
  }
  // Replace every entry of a dead server (again on each check while there is
  // none) by the live server, not in the row, with the fewest entries.
  bool changed = false;
  std::map<std::string, size_t> load;
  for (auto& r : rows_) for (auto& e : r) load[e.first]++;
  for (auto& row : rows_) {
    for (auto& e : row) {
      auto dead = servers_.find(e.first);
      if (dead == servers_.end() || !dead->second.dead) continue;
      const Server* best = nullptr;
      for (auto& [id2, s2] : servers_) {
        if (s2.dead) continue;
        bool in_row = std::any_of(row.begin(), row.end(), [&](auto& x) { return x.first == id2; });
        if (in_row) continue;
        if (!best || load[id2] < load[best->uuid]) best = &s2;
      }
      if (!best) continue;
      load[e.first]--;
      load[best->uuid]++;
      e = {best->uuid, true};
      changed = true;
    }
  }
  if (changed) {
    tlt_version_++;
    FLOG_INFO("TLT v%" PRIu64 " published after replacement", tlt_version_);
    (void)Save();
  }
}

std::string MetaState::TltText() const {
  std::vector<std::string> lines;
  lines.push_back("version " + std::to_string(tlt_version_) + " rows " + std::to_string(rows_.size()));
  for (const auto& row : rows_) {
    std::string l;
    for (const auto& [u, rec] : row) {
      auto it = servers_.find(u);
      if (!l.empty()) l += " ";
      l += (rec ? "*" : "") + (it == servers_.end() ? std::string("0.0.0.0:1") : it->second.addr);
    }
    lines.push_back(l);
  }
  return Ok(lines);
}

std::string MetaState::Handle(const std::string& line) {
  std::lock_guard<std::mutex> g(mu_);
  auto w = Split(line);
  if (w.empty()) return Err(-EINVAL, "empty request");
  const std::string& cmd = w[0];
  // REGISTER/HEARTBEAT ... [gens TOKEN]
  std::string gens_token;
  bool want_gens = (cmd == "REGISTER" || cmd == "HEARTBEAT") && w.size() >= 3 && w[w.size() - 2] == "gens";
  if (want_gens) {
    gens_token = w.back();
    w.resize(w.size() - 2);
  }
  auto with_gens = [&](std::vector<std::string> lines) {
    if (want_gens) {
      auto g = GenLines(gens_token);
      lines.insert(lines.end(), g.begin(), g.end());
    }
    return Ok(lines);
  };
  if (cmd == "REGISTER" && w.size() == 4) {
    auto hp = ParseHostPort(w[2]);
    if (!hp || w[1].size() > 64 || w[3].size() > 64) return Err(-EINVAL, "usage: REGISTER <uuid> <host:port> <zone>");
    auto it = servers_.find(w[1]);
    bool changed = it == servers_.end() || it->second.addr != w[2] || it->second.zone != w[3];
    Server& s = servers_[w[1]];
    bool revived = s.dead;
    s = Server{w[1], w[2], w[3], NowMs(), false};
    if (changed || revived) {
      if (!rows_.empty() && changed) tlt_version_++;  // its address in rows changed
      Status st = Save();
      if (!st.ok()) return Err(st.code(), st.message());
      FLOG_INFO("tract server %s registered at %s zone %s", w[1].c_str(), w[2].c_str(), w[3].c_str());
    }
    return with_gens({"tlt_version " + std::to_string(tlt_version_)});
  }
  if (cmd == "HEARTBEAT" && w.size() == 2) {
    auto it = servers_.find(w[1]);
    if (it == servers_.end()) return Err(-ENOENT, "unknown server; register first");
    if (it->second.dead) return Err(-ENOENT, "server was declared dead; register again");
    it->second.last_heartbeat_ms = NowMs();
    return with_gens({"tlt_version " + std::to_string(tlt_version_)});
  }
  if (cmd == "TLT") {
    if (rows_.empty()) {
      Status s = BuildTlt();
      if (!s.ok()) return Err(s.code(), s.message());
    }
    return TltText();
  }
  if (cmd == "SERVERS") {
    std::vector<std::string> out;
    uint64_t now = NowMs();
    for (const auto& [id, s] : servers_) {
      size_t rows = 0;
      for (auto& r : rows_) for (auto& e : r) rows += e.first == id;
      out.push_back(s.uuid + " " + s.addr + " zone=" + s.zone + " state=" + (s.dead ? "down" : "up") +
                    " last_heartbeat_ms=" + std::to_string(now - s.last_heartbeat_ms) +
                    " rows=" + std::to_string(rows));
    }
    return Ok(out);
  }
  if (cmd == "STATUS") {
    size_t up = 0;
    for (auto& [id, s] : servers_) up += !s.dead;
    size_t recovering = 0;
    for (auto& r : rows_) for (auto& e : r) recovering += e.second;
    return Ok({"servers " + std::to_string(servers_.size()) + " up " + std::to_string(up),
               "recovering_entries " + std::to_string(recovering) + " repaired " +
                   std::to_string(repaired_entries_) + " bytes " + std::to_string(repaired_bytes_),
               "tlt_version " + std::to_string(tlt_version_) + " rows " + std::to_string(rows_.size()),
               "volumes " + std::to_string(volumes_.size())});
  }
  if (cmd == "VOLUME") return CmdVolume(w);
  if (cmd == "LEASE") return CmdLease(w);
  return Err(-EINVAL, "unknown request '" + cmd + "'");
}

std::string MetaState::CmdLease(const std::vector<std::string>& w) {
  static const char* kUsage =
      "usage: LEASE ACQUIRE <volume> <ttl_ms> <holder> | RENEW <volume> <gen> | RELEASE <volume> <gen> | "
      "BREAK <volume> <gen> | INFO <volume>";
  if (w.size() < 3) return Err(-EINVAL, kUsage);
  const std::string& sub = w[1];
  const std::string& name = w[2];
  if (sub != "ACQUIRE" && sub != "RENEW" && sub != "RELEASE" && sub != "BREAK" && sub != "INFO")
    return Err(-EINVAL, kUsage);
  if (volumes_.find(name) == volumes_.end()) return Err(-ENOENT, "no volume named '" + name + "'");
  uint64_t now = NowMs();
  auto describe = [&](const Lease& x) {
    return "gen=" + std::to_string(x.gen) + " remaining_ms=" +
           std::to_string(LeaseHeld(x, now) ? x.expires_ms - now : 0) + " holder=" + x.holder;
  };
  auto lit = leases_.find(name);
  if (sub == "INFO" && w.size() == 3) {
    if (lit == leases_.end() || lit->second.holder.empty())
      return Ok({"gen=" + std::to_string(lit == leases_.end() ? 0 : lit->second.gen) + " free"});
    return Ok({describe(lit->second)});
  }
  if (sub != "ACQUIRE" && lit == leases_.end()) {
    if (sub == "RELEASE") return Ok({"not held"});
    return Err(-ESTALE, "lease lost: volume '" + name + "' has no write lease");
  }
  Lease& l = leases_[name];
  if (sub == "ACQUIRE" && w.size() == 5) {
    uint64_t ttl = 0;
    const std::string& holder = w[4];
    if (!ParseU64(w[3], &ttl) || ttl < 100 || ttl > 3600000) return Err(-EINVAL, "lease ttl_ms must be 100..3600000");
    if (holder.empty() || holder.size() > 200 ||
        holder.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._/:-") !=
            std::string::npos)
      return Err(-EINVAL, "lease holder must be 1..200 characters of [A-Za-z0-9._/:-]");
    if (LeaseHeld(l, now)) return Err(-EBUSY, "lease held: " + describe(l));
    Lease old = l;
    l = Lease{l.gen + 1, holder, ttl, now + ttl, ++gen_seq_};
    Status s = Save();
    if (!s.ok()) {
      l = old;
      return Err(s.code(), s.message());
    }
    FLOG_INFO("volume '%s': write lease generation %" PRIu64 " granted to %s for %" PRIu64 " ms", name.c_str(),
              l.gen, holder.c_str(), ttl);
    return Ok({"gen " + std::to_string(l.gen) + " ttl_ms " + std::to_string(ttl)});
  }
  uint64_t gen = 0;
  if (w.size() != 4 || !ParseU64(w[3], &gen)) return Err(-EINVAL, kUsage);
  if (sub == "RENEW") {
    // Also after the lease lapsed, as long as nobody took it meanwhile: its
    // holder stopped writing when it could not renew in time.
    if (l.gen != gen || l.holder.empty()) return Err(-ESTALE, "lease lost: " + describe(l));
    l.expires_ms = now + l.ttl_ms;
    return Ok({"ttl_ms " + std::to_string(l.ttl_ms)});
  }
  if (sub == "RELEASE" || sub == "BREAK") {
    if (l.gen != gen || l.holder.empty()) {
      if (sub == "RELEASE") return Ok({"not held"});
      return Err(-ESTALE, "lease changed meanwhile: " + describe(l));
    }
    Lease old = l;
    l.holder.clear();
    Status s = Save();
    if (!s.ok()) {
      l = old;
      return Err(s.code(), s.message());
    }
    FLOG_INFO("volume '%s': write lease generation %" PRIu64 " %s (holder %s)", name.c_str(), gen,
              sub == "RELEASE" ? "released" : "broken: its holder is gone", old.holder.c_str());
    return Ok({sub == "RELEASE" ? "released" : "broken"});
  }
  return Err(-EINVAL, kUsage);
}

std::string MetaState::CmdVolume(const std::vector<std::string>& w) {
  if (w.size() < 2) return Err(-EINVAL, "usage: VOLUME CREATE|DELETE|LIST|INFO|RESIZE ...");
  const std::string& sub = w[1];
  if (sub == "LIST") {
    std::vector<std::string> out;
    for (const auto& [n, v] : volumes_) out.push_back(v.Serialize());
    return Ok(out);
  }
  if (w.size() < 3) return Err(-EINVAL, "usage: VOLUME " + sub + " <name> ...");
  const std::string& name = w[2];
  Status ns = ValidateVolumeName(name);
  if (!ns.ok()) return Err(ns.code(), ns.message());
  auto it = volumes_.find(name);
  if (sub == "INFO") {
    if (it == volumes_.end()) return Err(-ENOENT, "no volume named '" + name + "'");
    return Ok({it->second.Serialize()});
  }
  if (sub == "DELETE") {
    if (it == volumes_.end()) return Err(-ENOENT, "no volume named '" + name + "'");
    auto lt = leases_.find(name);
    uint64_t now = NowMs();
    if (lt != leases_.end() && LeaseHeld(lt->second, now))
      return Err(-EBUSY, "volume '" + name + "' is being served by " + lt->second.holder +
                             " (write lease, generation " + std::to_string(lt->second.gen) + "); stop it first");
    VolumeInfo v = it->second;
    volumes_.erase(it);
    // Keep the generation: a volume created again under this name goes on
    // from it, so an old holder's RENEW/RELEASE can never match a new grant.
    if (lt != leases_.end()) lt->second.holder.clear();
    Status s = Save();
    if (!s.ok()) return Err(s.code(), s.message());
    return Ok({v.Serialize()});  // the caller deletes the blob's tracts
  }
  if (sub == "RESIZE") {
    if (it == volumes_.end()) return Err(-ENOENT, "no volume named '" + name + "'");
    if (w.size() != 4) return Err(-EINVAL, "usage: VOLUME RESIZE <name> <size>");
    auto sz = ParseSize(w[3]);
    if (!sz) return Err(-EINVAL, "bad size '" + w[3] + "'");
    VolumeInfo v = it->second;
    if (*sz < v.size) return Err(-EINVAL, "shrinking a volume is not supported (it would drop data)");
    v.size = *sz;
    Status vs = ValidateVolume(v);
    if (!vs.ok()) return Err(vs.code(), vs.message());
    it->second = v;
    Status s = Save();
    if (!s.ok()) return Err(s.code(), s.message());
    return Ok({v.Serialize()});
  }
  if (sub == "CREATE") {
    if (it != volumes_.end()) return Err(-EEXIST, "volume '" + name + "' already exists");
    std::string spec = "name=" + name;
    for (size_t i = 3; i < w.size(); ++i) spec += " " + w[i];
    auto v = VolumeInfo::Parse(spec);
    if (!v) return Err(-EINVAL, "bad volume parameters: " + spec);
    if (v->stripe_unit == 0) v->stripe_unit = VolumeInfo::DefaultStripeUnit(v->mode, v->tract_size);
    Status vs = ValidateVolume(*v);
    if (!vs.ok()) return Err(vs.code(), vs.message());
    if (rows_.empty()) {
      Status s = BuildTlt();
      if (!s.ok()) return Err(s.code(), s.message());
    }
    if (v->replicas > rows_[0].size())
      return Err(-EINVAL, "replicas=" + std::to_string(v->replicas) + " but only " +
                              std::to_string(rows_[0].size()) + " servers per TLT row");
    // A blob id no one has used: a random high half, a counter low half.
    std::random_device rd;
    v->blob_hi = (static_cast<uint64_t>(rd()) << 32) | rd();
    v->blob_lo = next_blob_++;
    v->created = static_cast<uint64_t>(time(nullptr));
    volumes_[name] = *v;
    Status s = Save();
    if (!s.ok()) return Err(s.code(), s.message());
    return Ok({v->Serialize()});
  }
  return Err(-EINVAL, "unknown VOLUME subcommand '" + sub + "'");
}


int MetaState::RepairOnce() {
  struct Job {
    size_t row, idx;
    std::string target_uuid, target_addr;
    std::vector<std::string> sources;
  };
  std::vector<Job> jobs;
  size_t nrows;
  {
    std::lock_guard<std::mutex> g(mu_);
    nrows = rows_.size();
    for (size_t r = 0; r < rows_.size(); ++r) {
      for (size_t i = 0; i < rows_[r].size(); ++i) {
        auto [uuid, rec] = rows_[r][i];
        if (!rec) continue;
        auto t = servers_.find(uuid);
        if (t == servers_.end() || t->second.dead) continue;
        Job j{r, i, uuid, t->second.addr, {}};
        for (auto& [u2, rec2] : rows_[r]) {
          auto s = servers_.find(u2);
          if (!rec2 && s != servers_.end() && !s->second.dead) j.sources.push_back(s->second.addr);
        }
        jobs.push_back(std::move(j));
      }
    }
  }
  if (jobs.empty()) return 0;
  // One listing per source server, shared by every job.
  std::map<std::string, std::vector<tractproto::TractEntry>> listings;
  int completed = 0;
  for (const Job& j : jobs) {
    TractSyncClient dst(j.target_addr);
    uint64_t tracts = 0, bytes = 0;
    bool ok = true;
    for (const std::string& src_addr : j.sources) {
      TractSyncClient src(src_addr);
      if (!listings.count(src_addr)) {
        auto l = src.ListTracts();
        if (!l) { ok = false; break; }
        listings[src_addr] = std::move(*l);
      }
      for (const auto& t : listings[src_addr]) {
        if (Tlt::RowFor(t.blob_hi, t.blob_lo, t.tract, nrows) != j.row || t.allocated_chunks == 0) continue;
        auto bm = src.StatTract(t);
        if (!bm) { ok = false; break; }
        uint32_t n = t.tract_size / tractproto::kChunkSize;
        auto alloc = [&](uint32_t c) { return c < n && ((*bm)[c / 8] >> (c % 8) & 1); };
        for (uint32_t c = 0; c < n && ok;) {
          if (!alloc(c)) { ++c; continue; }
          uint32_t e = c;
          while (e < n && alloc(e) && (e - c) * tractproto::kChunkSize < tractproto::kMaxIo) ++e;
          uint32_t off = c * tractproto::kChunkSize, len = (e - c) * tractproto::kChunkSize;
          auto data = src.Read(t, off, len);
          int w = data ? dst.Write(t, off, *data, tractproto::kFlagFill) : data.err();
          if (w < 0) {
            FLOG_WARN("re-replication of row %zu to %s: %s", j.row, j.target_addr.c_str(), errstr(w).c_str());
            ok = false;
          }
          bytes += len;
          c = e;
        }
        if (!ok) break;
        tracts++;
      }
      if (!ok) break;
    }
    if (!ok) continue;  // try again on the next pass
    std::lock_guard<std::mutex> g(mu_);
    if (rows_.size() != nrows || j.idx >= rows_[j.row].size() ||
        rows_[j.row][j.idx] != std::make_pair(j.target_uuid, true))
      continue;  // the TLT changed meanwhile; the next pass sees the new state
    rows_[j.row][j.idx].second = false;
    tlt_version_++;
    repaired_entries_++;
    repaired_bytes_ += bytes;
    completed++;
    size_t left = 0;
    for (auto& r : rows_) for (auto& e : r) left += e.second;
    FLOG_INFO("re-replicated row %zu to %s: %llu tracts, %s; TLT v%llu; %zu entries still recovering",
              j.row, j.target_addr.c_str(), (unsigned long long)tracts, FormatSize(bytes).c_str(),
              (unsigned long long)tlt_version_, left);
    (void)Save();
  }
  return completed;
}

}  // namespace flurry
