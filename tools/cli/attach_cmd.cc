// SPDX-License-Identifier: Apache-2.0
//
// flurry attach: a volume as a mounted filesystem (see attach.h).
#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <fstream>

#include "meta/meta_client.h"
#include "tools/cli/attach.h"
#include "tools/cli/disk_daemon.h"
#include "tools/cli/format.h"

namespace flurry::cli {
namespace {

constexpr int kDaemonReadyMs = 30000;

bool Exists(const std::string& p) { return access(p.c_str(), F_OK) == 0; }

// The first /dev/nbdN without a client connected.
std::string FreeNbdDevice() {
  for (int i = 0; i < 1024; ++i) {
    std::string sys = "/sys/block/nbd" + std::to_string(i);
    if (!Exists(sys)) break;
    if (!Exists(sys + "/pid") && Exists("/dev/nbd" + std::to_string(i))) return "/dev/nbd" + std::to_string(i);
  }
  return "";
}

struct AttachOptions {
  std::string volume, mountpoint, mkfs, fs_options, method;
};

Status ParseAttach(const Args& a, AttachOptions* o) {
  o->volume = a.positional()[0];
  if (Status s = ValidateVolumeName(o->volume); !s.ok())
    return Status::Error(-EINVAL, "bad volume name '" + o->volume + "': " + s.message());
  o->mkfs = a.Get("mkfs");
  if (a.Has("mkfs")) {
    bool ok = !o->mkfs.empty() && o->mkfs.size() < 32;
    for (char c : o->mkfs) ok = ok && (isalnum(static_cast<unsigned char>(c)) || c == '.');
    if (!ok) return Status::Error(-EINVAL, "bad --mkfs '" + o->mkfs + "': want a filesystem type such as ext4 or xfs");
    if (!InPath("mkfs." + o->mkfs))
      return Status::Error(-ENOENT, "mkfs." + o->mkfs + " is not installed (ext4: apt-get install e2fsprogs; "
                                    "xfs: apt-get install xfsprogs)");
  }
  o->fs_options = a.Get("fs-options");
  std::string via = a.Get("via", "auto");
  if (via != "auto" && via != "nbd" && via != "fuse")
    return Status::Error(-EINVAL, "bad --via '" + via + "': want auto, nbd or fuse");
  if (geteuid() != 0)
    return Status::Error(-EPERM, "attach needs root: it creates a block device and mounts it (run it as root, "
                                 "e.g. with sudo)");
  bool nbd = Exists("/dev/nbd0") && InPath("nbd-client");
  bool fuse = Exists("/dev/fuse") && InPath("losetup");
  if (via == "nbd" && !nbd)
    return Status::Error(-ENODEV, "--via nbd needs the kernel NBD client (/dev/nbd0: modprobe nbd) and nbd-client "
                                  "(apt-get install nbd-client)");
  if (via == "fuse" && !fuse)
    return Status::Error(-ENODEV, "--via fuse needs /dev/fuse and losetup (util-linux)");
  if (!nbd && !fuse)
    return Status::Error(-ENODEV, "cannot attach here: there is neither the kernel NBD client (/dev/nbd0 with "
                                  "nbd-client) nor FUSE (/dev/fuse with losetup)");
  o->method = via == "fuse" || (via == "auto" && !nbd) ? "fuse-loop" : "nbd";
  char real[PATH_MAX];
  const std::string& m = a.positional()[1];
  if (!realpath(m.c_str(), real))
    return Status::Error(-ENOENT, "mount point " + m + " does not exist; create it first (mkdir -p " + m + ")");
  struct stat st;
  if (stat(real, &st) < 0 || !S_ISDIR(st.st_mode))
    return Status::Error(-ENOTDIR, "mount point " + m + " is not a directory");
  o->mountpoint = real;
  return Status::Ok();
}

// Steps after flurry-disk is up: device, filesystem, mount. Saves rec as it goes.
Status AttachDevice(const ClusterDir& d, const AttachOptions& o, AttachRecord* rec, int disk_port) {
  if (o.method == "nbd") {
    std::string dev = FreeNbdDevice();
    if (dev.empty()) return Status::Error(-EBUSY, "every /dev/nbd* device is in use (see `nbd-client -c /dev/nbdN`)");
    RunResult r = Run({"nbd-client", "127.0.0.1", std::to_string(disk_port), dev, "-N", o.volume});
    if (!r.ok()) return Status::Error(-EIO, "nbd-client could not connect " + dev + ": " + r.Trimmed());
    rec->device = dev;
  } else {
    std::string file = rec->fuse_dir + "/" + o.volume;
    char real[PATH_MAX];
    if (!realpath(file.c_str(), real))
      return Status::Error(-ENOENT, "flurry-disk is ready but " + file + " is missing; see " + d.LogFile(rec->daemon));
    rec->backing = real;  // as /sys/block/loopN/loop/backing_file will name it
    RunResult r = Run({"losetup", "-f", "--show", "--direct-io=on", rec->backing});
    if (!r.ok()) r = Run({"losetup", "-f", "--show", rec->backing});  // FUSE may refuse O_DIRECT
    if (!r.ok()) return Status::Error(-EIO, "losetup " + rec->backing + " failed: " + r.Trimmed());
    rec->device = r.Trimmed();
  }
  if (Status s = rec->Save(d); !s.ok()) return s;

  RunResult probe = Run({"blkid", "-p", "-o", "value", "-s", "TYPE", rec->device});
  if (probe.ok() && !probe.Trimmed().empty()) {
    rec->fs = probe.Trimmed();
    if (!o.mkfs.empty())
      printf("%s already holds a filesystem (%s): not formatting it (--mkfs only formats an empty volume)\n",
             o.volume.c_str(), rec->fs.c_str());
  } else if (probe.status == 2 || (probe.ok() && probe.Trimmed().empty())) {
    if (o.mkfs.empty())
      return Status::Error(-EINVAL, "volume " + o.volume + " holds no filesystem yet; attach it with --mkfs ext4 "
                                    "(or another type) to create one");
    std::vector<std::string> argv = {"mkfs." + o.mkfs};
    if (o.mkfs.rfind("ext", 0) == 0 || o.mkfs == "xfs") argv.push_back("-q");
    argv.push_back(rec->device);
    printf("formatting %s (%s) with mkfs.%s ...\n", o.volume.c_str(), rec->device.c_str(), o.mkfs.c_str());
    fflush(stdout);
    RunResult r = Run(argv);
    if (!r.ok()) return Status::Error(-EIO, "mkfs." + o.mkfs + " " + rec->device + " failed: " + r.Trimmed());
    rec->fs = o.mkfs;
  } else {
    return Status::Error(-EIO, "blkid cannot tell what " + rec->device + " holds: " + probe.Trimmed());
  }
  std::vector<std::string> argv = {"mount", "-t", rec->fs};
  if (!o.fs_options.empty()) argv.insert(argv.end(), {"-o", o.fs_options});
  argv.insert(argv.end(), {rec->device, o.mountpoint});
  RunResult r = Run(argv);
  if (!r.ok()) return Status::Error(-EIO, "mount " + rec->device + " on " + o.mountpoint + " failed: " + r.Trimmed());
  rec->mounted = true;
  return rec->Save(d);
}

int Attach(const Args& a) {
  AttachOptions o;
  if (Status s = ParseAttach(a, &o); !s.ok()) return Fail(s);
  auto meta = MetaFor(a);
  if (!meta.ok()) return Fail(meta.status);
  MetaClient mc(meta.value);
  auto vol = FetchVolume(mc, o.volume);
  if (!vol.ok()) return Fail(vol.status);
  ClusterDir d = DirFor(a);
  if (Status s = d.MakeDirs(); !s.ok()) return Fail(s);
  auto lock = DirLock::Acquire(d);
  if (!lock.ok()) return Fail(lock.status);
  if (auto old = AttachRecord::Load(d, o.volume); old.ok())
    return Fail("volume " + o.volume + " is already attached at " + old.value.mountpoint + "; run `flurry detach " +
                o.volume + "` first");
  for (const AttachRecord& other : ListAttachments(d))
    if (other.mountpoint == o.mountpoint)
      return Fail("mount point " + o.mountpoint + " is taken by volume " + other.volume + " (flurry detach " +
                  other.volume + ")");
  if (IsMountPoint(o.mountpoint))
    return Fail("mount point " + o.mountpoint + " is busy: " + MountSource(o.mountpoint) +
                " is mounted there (see `findmnt " + o.mountpoint + "`); pick another");
  auto served = ServedVolumes(d);
  if (served.count(o.volume))
    return Fail("volume " + o.volume + " is being served by flurry-disk pid " + std::to_string(served[o.volume].pid) +
                "; attaching it too would give it two writers (stop it with `flurry serve --stop " + o.volume + "`)");

  AttachRecord rec;
  rec.volume = o.volume;
  rec.mountpoint = o.mountpoint;
  rec.method = o.method;
  rec.daemon = AttachDaemonName(o.volume);
  if (o.method == "fuse-loop") rec.fuse_dir = d.FuseDir(o.volume);
  if (Status s = rec.Save(d); !s.ok()) return Fail(s);
  auto undo = [&](const Status& why) {
    Status u = Detach(d, rec, true);
    std::string tail = u.ok() ? "\n(undid the steps already taken)"
                              : "\n(undoing the steps already taken failed too: " + u.ToString() +
                                    "; see `flurry status` and run `flurry detach " + o.volume + " --force`)";
    return Fail("cannot attach " + o.volume + ": " + why.ToString() + tail);
  };

  std::vector<std::string> args = {"--volume", o.volume};
  std::string port_file = d.PortFile(rec.daemon);
  unlink(port_file.c_str());
  if (o.method == "nbd") {
    args.insert(args.end(), {"--listen", "127.0.0.1:0", "--port-file", port_file});
  } else {
    if (mkdir(rec.fuse_dir.c_str(), 0755) < 0 && errno != EEXIST)
      return undo(ErrnoStatus("cannot create " + rec.fuse_dir));
    args.insert(args.end(), {"--fuse", rec.fuse_dir});
    if (DiskSupports("--no-tcp")) args.push_back("--no-tcp");
    else args.insert(args.end(), {"--listen", "127.0.0.1:0", "--port-file", port_file});
  }
  auto pid = StartDiskDaemon(d, rec.daemon, meta.value, args, kDaemonReadyMs);
  if (!pid.ok()) return undo(pid.status);
  int port = 0;
  if (o.method == "nbd") {
    std::ifstream pf(port_file);
    if (!(pf >> port) || port <= 0) return undo(Status::Error(-EIO, "flurry-disk wrote no port to " + port_file));
  }
  if (Status s = AttachDevice(d, o, &rec, port); !s.ok()) return undo(s);

  printf("attached %s at %s: %s %s", o.volume.c_str(), o.mountpoint.c_str(), rec.fs.c_str(), rec.device.c_str());
  if (o.method == "nbd") printf(" (kernel NBD client, flurry-disk pid %d on port %d)\n", pid.value, port);
  else printf(" (loop device over the FUSE file %s, flurry-disk pid %d)\n", rec.backing.c_str(), pid.value);
  if (vol.value.mode != WriteMode::kWriteThrough)
    printf("note: %s uses %s mode: fsync returns before data is durable; after a crash the volume holds a prefix "
           "of its writes\n", o.volume.c_str(), WriteModeName(vol.value.mode));
  printf("detach with `flurry detach %s`\n", o.volume.c_str());
  return 0;
}

}  // namespace

int Detach(const Args& a);  // detach_cmd.cc

std::vector<Command> AttachCommands() {
  return {
      {"attach", "VOLUME MOUNTPOINT [options]", "Mount a volume as a local filesystem (needs root).",
       "With the kernel NBD client (/dev/nbd0 and nbd-client): starts flurry-disk on a free\n"
       "loopback port and connects a free /dev/nbdN to it. Otherwise: starts flurry-disk with\n"
       "its FUSE export in DIR/fuse-VOLUME and puts a loop device on the file there\n"
       "(losetup --direct-io=on, buffered if that is refused). Then, if the device holds no\n"
       "filesystem and --mkfs is given, formats it, and mounts it on MOUNTPOINT (which must\n"
       "exist). Every step is recorded in DIR/attach/VOLUME; a failed attach is undone.\n",
       {{"mkfs", "TYPE", "format the volume with mkfs.TYPE if it holds no filesystem yet (e.g. ext4)"},
        {"fs-options", "OPTS", "mount options, passed as mount -o OPTS"},
        {"via", "HOW", "auto (default: nbd when available, else fuse), nbd or fuse"}},
       true, 2, 2, Attach},
      {"detach", "VOLUME|MOUNTPOINT [--force]", "Undo `flurry attach` (needs root).",
       "Unmounts the filesystem, releases the device (nbd-client -d or losetup -d), stops the\n"
       "volume's flurry-disk and removes its FUSE mount and record, in that order. If the mount\n"
       "point is busy nothing is changed, unless --force: then it is unmounted lazily.\n",
       {{"force", "", "unmount lazily (umount -l) when busy, and carry on past failed steps"}, DirFlag()},
       false, 1, 1, Detach},
  };
}

}  // namespace flurry::cli
