// SPDX-License-Identifier: Apache-2.0
//
// flurry volume create | list | info | resize | delete
#include <ctime>
#include <memory>

#include "common/kv_text.h"
#include "common/loop.h"
#include "fdsclient/fds_client.h"
#include "meta/meta_client.h"
#include "tools/cli/attach.h"
#include "tools/cli/cluster_dir.h"
#include "tools/cli/disk_daemon.h"
#include "tools/cli/format.h"

namespace flurry::cli {
namespace {

const char* kRelaxedNote =
    "flushes are acknowledged before writes are durable; after a crash the volume holds a prefix of its writes";

int VolumeCreate(const Args& a) {
  VolumeInfo v;
  v.name = a.positional()[0];
  v.replicas = 2;
  if (Status s = ValidateVolumeName(v.name); !s.ok()) return Fail("bad volume name '" + v.name + "': " + s.message());
  if (!a.Has("size")) return Fail("a volume needs a size: add --size SIZE (e.g. --size 10G)");
  auto size = ParseSizeArg("--size", a.Get("size"));
  if (!size.ok()) return Fail(size.status);
  v.size = size.value;
  if (a.Has("tract-size")) {
    auto t = ParseSizeArg("--tract-size", a.Get("tract-size"));
    if (!t.ok()) return Fail(t.status);
    if (t.value > UINT32_MAX) return Fail("--tract-size is at most 1G");
    v.tract_size = static_cast<uint32_t>(t.value);
  }
  bool have_block = a.Has("block");
  if (have_block) {
    auto b = ParseSizeArg("--block", a.Get("block"));
    if (!b.ok()) return Fail(b.status);
    if (b.value > UINT32_MAX) return Fail("--block is at most the tract size");
    v.block_size = static_cast<uint32_t>(b.value);
  }
  if (a.Has("stripe")) {
    auto b = ParseSizeArg("--stripe", a.Get("stripe"));
    if (!b.ok()) return Fail(b.status);
    if (b.value > UINT32_MAX) return Fail("--stripe is at most the tract size");
    v.stripe_unit = static_cast<uint32_t>(b.value);
  }
  if (a.Has("replicas")) {
    auto r = ParseCount("--replicas", a.Get("replicas"), 1, 3);
    if (!r.ok()) return Fail(r.status);
    v.replicas = static_cast<uint32_t>(r.value);
  }
  if (a.Has("segment")) {
    auto s = ParseCount("--segment", a.Get("segment"), 1, 4096);
    if (!s.ok()) return Fail(s.status);
    v.segment_tracts = static_cast<uint32_t>(s.value);
  }
  if (a.Has("mode")) {
    auto m = ParseWriteMode(a.Get("mode"));
    if (!m) return Fail("bad --mode '" + a.Get("mode") + "': want write-through, fast-ack or log");
    v.mode = *m;
  }
  if (!have_block) v.block_size = VolumeInfo::DefaultBlockSize(v.mode, v.tract_size);
  if (v.stripe_unit && v.mode != WriteMode::kLog)
    return Fail("--stripe is for log volumes; in the other modes --block is the stripe unit");
  if (!v.stripe_unit) v.stripe_unit = VolumeInfo::DefaultStripeUnit(v.mode, v.tract_size);
  if (Status s = ValidateVolume(v); !s.ok()) return Fail(s);
  auto meta = MetaFor(a);
  if (!meta.ok()) return Fail(meta.status);
  MetaClient mc(meta.value);
  MetaReply r = mc.Call("VOLUME CREATE " + v.name + " size=" + std::to_string(v.size) +
                        " tract_size=" + std::to_string(v.tract_size) + " replicas=" + std::to_string(v.replicas) +
                        " segment=" + std::to_string(v.segment_tracts) + " block=" + std::to_string(v.block_size) +
                        (v.stripe_unit ? " stripe=" + std::to_string(v.stripe_unit) : std::string()) +
                        " mode=" + WriteModeName(v.mode));
  if (!r.status.ok()) {
    if (r.status.code() == -EEXIST)
      return Fail("volume '" + v.name + "' already exists (see `flurry volume info " + v.name +
                  "`; pick another name or delete it first)");
    std::string hint = r.status.message().find("servers per TLT row") != std::string::npos
                           ? " (use fewer --replicas, or a cluster with more tract servers)"
                           : "";
    return Fail("cannot create volume '" + v.name + "': " + r.status.ToString() + hint);
  }
  printf("created volume %s: %s, %u replica%s, tract %s, segment %u, block %s%s%s, %s\n", v.name.c_str(),
         CompactSize(v.size).c_str(), v.replicas, v.replicas == 1 ? "" : "s", CompactSize(v.tract_size).c_str(),
         v.segment_tracts, CompactSize(v.block_size).c_str(), v.stripe_unit ? ", stripe unit " : "",
         v.stripe_unit ? CompactSize(v.stripe_unit).c_str() : "", ModeText(v.mode).c_str());
  if (v.mode != WriteMode::kWriteThrough) printf("note: %s: %s\n", WriteModeName(v.mode), kRelaxedNote);
  return 0;
}

int VolumeList(const Args& a) {
  auto meta = MetaFor(a);
  if (!meta.ok()) return Fail(meta.status);
  MetaClient mc(meta.value);
  auto vols = ListVolumes(mc);
  if (!vols.ok()) return Fail(vols.status);
  if (vols.value.empty()) {
    printf("no volumes (create one with `flurry volume create NAME --size 10G`)\n");
    return 0;
  }
  PrintVolumeTable(vols.value);
  return 0;
}

int VolumeInfoCmd(const Args& a) {
  auto meta = MetaFor(a);
  if (!meta.ok()) return Fail(meta.status);
  MetaClient mc(meta.value);
  auto v = FetchVolume(mc, a.positional()[0]);
  if (!v.ok()) return Fail(v.status);
  const VolumeInfo& i = v.value;
  time_t created = static_cast<time_t>(i.created);
  char when[64] = "-";
  if (created) strftime(when, sizeof when, "%F %T %Z", localtime(&created));
  uint64_t tracts = (i.size + i.tract_size - 1) / i.tract_size;
  printf("name        %s\n", i.name.c_str());
  printf("blob id     %s\n", i.IdHex().c_str());
  printf("size        %s (%llu bytes)\n", CompactSize(i.size).c_str(), static_cast<unsigned long long>(i.size));
  printf("replicas    %u\n", i.replicas);
  printf("tract size  %s (%llu tracts)\n", CompactSize(i.tract_size).c_str(), static_cast<unsigned long long>(tracts));
  printf("segment     %u tracts (stripe units go round-robin over them)\n", i.segment_tracts);
  if (i.mode == WriteMode::kLog) {
    printf("block       %s (log block: smaller writes read the rest of their block first)\n",
           CompactSize(i.block_size).c_str());
    printf("stripe unit %s\n", CompactSize(i.StripeUnit()).c_str());
  } else {
    printf("block       %s (stripe unit)\n", CompactSize(i.block_size).c_str());
  }
  printf("mode        %s\n", ModeText(i.mode).c_str());
  if (i.mode != WriteMode::kWriteThrough) printf("            (%s)\n", kRelaxedNote);
  printf("created     %s\n", when);
  // Who writes it: the holder of its write lease at flurry-meta.
  MetaReply l = mc.Call("LEASE INFO " + i.name);
  if (l.status.ok() && !l.lines.empty()) {
    const std::string& t = l.lines[0];
    std::string holder = KvField(t, "holder"), gen = KvField(t, "gen");
    if (holder.empty() || KvField(t, "remaining_ms") == "0") {
      printf("writer      none (no flurry-disk holds its write lease)\n");
    } else if (auto h = DiskHolder::Parse(holder); h.ok()) {
      printf("writer      flurry-disk pid %s on %s (write lease generation %s)\n", h->pid.c_str(), h->host.c_str(),
             gen.c_str());
    } else {
      printf("writer      %s (write lease generation %s)\n", holder.c_str(), gen.c_str());
    }
  }
  return 0;
}

int VolumeResize(const Args& a) {
  const std::string& name = a.positional()[0];
  auto size = ParseSizeArg("size", a.positional()[1]);
  if (!size.ok()) return Fail(size.status);
  auto meta = MetaFor(a);
  if (!meta.ok()) return Fail(meta.status);
  MetaClient mc(meta.value);
  auto v = FetchVolume(mc, name);
  if (!v.ok()) return Fail(v.status);
  if (size.value < v.value.size)
    return Fail("volume '" + name + "' is " + CompactSize(v.value.size) + "; shrinking to " +
                CompactSize(size.value) + " is not supported (it would drop data): volumes only grow");
  if (size.value == v.value.size) {
    printf("volume %s is already %s\n", name.c_str(), CompactSize(size.value).c_str());
    return 0;
  }
  MetaReply r = mc.Call("VOLUME RESIZE " + name + " " + std::to_string(size.value));
  if (!r.status.ok()) return Fail("cannot resize '" + name + "': " + r.status.ToString());
  printf("volume %s grown from %s to %s\n", name.c_str(), CompactSize(v.value.size).c_str(),
         CompactSize(size.value).c_str());
  ClusterDir d = DirFor(a);
  auto served = ServedVolumes(d);
  if (served.count(name))
    printf("note: flurry-disk pid %d serves it with the old size until it is restarted\n", served[name].pid);
  return 0;
}

// Deletes the blob's tracts on every tract server of the TLT.
Status DeleteTracts(const HostPort& meta, const VolumeInfo& v) {
  auto loop = Loop::Create(64);
  if (!loop) return Status::Error(loop.err(), "io_uring: " + errstr(loop.err()));
  Status why;
  FdsClient::Options o;
  o.meta = meta;
  o.op_deadline_ms = 30000;
  auto fds = FdsClient::Create(loop->get(), o, &why);
  if (!fds) return why;
  int res = 1;
  (*fds)->DeleteBlob(BlobRef{v.blob_hi, v.blob_lo, v.tract_size, v.replicas}, [&](int r) { res = r; });
  while (res == 1) (*loop)->RunOnce(100);
  // Let the connections finish closing before the loop goes away.
  (*fds)->Shutdown();
  for (int i = 0; i < 10; ++i) (*loop)->RunOnce(10);
  fds->reset();
  return res < 0 ? Status::Error(res, errstr(res)) : Status::Ok();
}

int VolumeDelete(const Args& a) {
  const std::string& name = a.positional()[0];
  auto meta = MetaFor(a);
  if (!meta.ok()) return Fail(meta.status);
  ClusterDir d = DirFor(a);
  if (auto rec = AttachRecord::Load(d, name); rec.ok())
    return Fail("volume '" + name + "' is attached at " + rec.value.mountpoint + "; run `flurry detach " + name +
                "` first");
  auto served = ServedVolumes(d);
  if (served.count(name))
    return Fail("volume '" + name + "' is being served by flurry-disk pid " + std::to_string(served[name].pid) +
                " (" + served[name].name + "); stop it first with `flurry serve --stop " + name + "`");
  MetaClient mc(meta.value);
  if (auto v = FetchVolume(mc, name); !v.ok()) return Fail(v.status);
  MetaReply r = mc.Call("VOLUME DELETE " + name);
  if (!r.status.ok()) return Fail("cannot delete '" + name + "': " + r.status.ToString());
  auto v = r.lines.empty() ? VolumeInfo::Parse("") : VolumeInfo::Parse(r.lines[0]);
  if (!v) return Fail("deleted '" + name + "' from the registry, but flurry-meta's reply was malformed, so its "
                      "tracts could not be deleted");
  Status s = DeleteTracts(meta.value, *v);
  if (!s.ok())
    return Fail("deleted '" + name + "' from the registry, but deleting its tracts failed: " + s.ToString() +
                "; blob " + v->IdHex() + " now holds space on the tract servers that nothing refers to");
  printf("deleted volume %s (%s) and its tracts\n", name.c_str(), CompactSize(v->size).c_str());
  return 0;
}

}  // namespace

std::vector<Command> VolumeCommands() {
  return {
      {"volume create", "NAME --size SIZE [options]", "Create a volume.",
       "NAME: 1 to 64 letters, digits, '.', '_' or '-', not starting with '.' or '-'.\n"
       "Sizes take K, M, G or T suffixes (powers of 1024). Write modes:\n"
       "  write-through  a write is acknowledged when all replicas are durable; FLUSH means durable\n"
       "  fast-ack       writes and flushes are acknowledged at once (flush epochs); after a\n"
       "                 crash the disk holds a prefix of its writes (relaxed flush)\n"
       "  log            like fast-ack, with out-of-order commits to a log (relaxed flush)\n",
       {{"size", "SIZE", "capacity, a multiple of 4K (required)"},
        {"replicas", "R", "copies of every tract, 1 to 3 (default 2)"},
        {"tract-size", "SIZE", "tract size, a power of two from 64K to 1G (default 8M)"},
        {"segment", "S", "tracts per segment for nested striping, 1 to 4096 (default 128)"},
        {"block", "SIZE", "stripe unit, a power of two from 4K to the tract size (default 1M, or the tract size if smaller); in log mode the log block instead (default 64K): smaller writes read the rest of their block first"},
        {"stripe", "SIZE", "log mode only: the stripe unit, a power of two from 4K to the tract size (default 1M, or the tract size if smaller)"},
        {"mode", "MODE", "write-through (default), fast-ack or log"}},
       true, 1, 1, VolumeCreate},
      {"volume list", "", "List the volumes: name, size, replicas, tract size, segment, block, mode.", "", {},
       true, 0, 0, VolumeList},
      {"volume info", "NAME", "Show one volume's geometry, write mode and blob id.", "", {}, true, 1, 1,
       VolumeInfoCmd},
      {"volume resize", "NAME SIZE", "Grow a volume to SIZE (volumes never shrink).", "", {}, true, 2, 2,
       VolumeResize},
      {"volume delete", "NAME", "Delete a volume: its registry entry, then its tracts on every server.",
       "Refuses while the volume is attached or served by a daemon of this cluster directory.\n", {}, true, 1, 1,
       VolumeDelete},
  };
}

}  // namespace flurry::cli
