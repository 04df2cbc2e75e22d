// SPDX-License-Identifier: Apache-2.0
//
// flurry detach, and Detach() for `flurry cluster stop` and failed attaches.
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <fstream>

#include "meta/meta_types.h"
#include "tools/cli/attach.h"
#include "tools/cli/disk_daemon.h"

namespace flurry::cli {
namespace {

// The file behind /dev/loopN, "" when the device is not set up.
std::string LoopBacking(const std::string& dev) {
  std::string name = dev.substr(dev.rfind('/') + 1);
  std::ifstream in("/sys/block/" + name + "/loop/backing_file");
  std::string f;
  std::getline(in, f);
  return f;
}

bool NbdConnected(const std::string& dev) {
  std::string name = dev.substr(dev.rfind('/') + 1);
  return access(("/sys/block/" + name + "/pid").c_str(), F_OK) == 0;
}

Status Unmount(const std::string& mnt, bool force) {
  RunResult r = Run({"umount", mnt});
  if (r.ok()) return Status::Ok();
  if (!force)
    return Status::Error(-EBUSY, "cannot unmount " + mnt + ": " + r.Trimmed() +
                                     "\nIt is probably in use: close the files and shells using it (`fuser -vm " +
                                     mnt + "` lists them) and retry, or use --force to unmount it lazily.");
  r = Run({"umount", "-l", mnt});
  if (!r.ok()) return Status::Error(-EIO, "cannot unmount " + mnt + " even lazily: " + r.Trimmed());
  return Status::Ok();
}

}  // namespace

Status Detach(const ClusterDir& d, const AttachRecord& rec0, bool force) {
  AttachRecord rec = rec0;
  Status first;  // with force, the first failure, reported at the end
  auto failed = [&](Status s) {
    if (first.ok()) first = std::move(s);
    return !force;
  };
  // 1. The filesystem, if it is still ours that is mounted there.
  if (!rec.device.empty() && MountSource(rec.mountpoint) == rec.device) {
    if (Status s = Unmount(rec.mountpoint, force); !s.ok()) return s;
  }
  rec.mounted = false;
  (void)rec.Save(d);
  // 2. The block device, if it is still the one we set up.
  if (!rec.device.empty()) {
    if (rec.method == "nbd" && NbdConnected(rec.device)) {
      RunResult r = Run({"nbd-client", "-d", rec.device});
      if (!r.ok() && failed(Status::Error(-EIO, "nbd-client -d " + rec.device + " failed: " + r.Trimmed())))
        return first;
    } else if (rec.method == "fuse-loop" && !rec.backing.empty() && LoopBacking(rec.device) == rec.backing) {
      RunResult r = Run({"losetup", "-d", rec.device});
      if (!r.ok() && failed(Status::Error(-EIO, "losetup -d " + rec.device + " failed: " + r.Trimmed())))
        return first;
    }
    rec.device.clear();
    (void)rec.Save(d);
  }
  // 3. flurry-disk (it unmounts its FUSE export as it exits).
  if (!rec.daemon.empty()) {
    auto dm = ReadDaemon(d.Pids(), rec.daemon);
    if (dm.ok()) StopDaemons({dm.value}, 35000);
    unlink(d.PortFile(rec.daemon).c_str());
  }
  // 4. Its FUSE mount point, if a killed daemon left it behind.
  if (!rec.fuse_dir.empty()) {
    if (IsMountPoint(rec.fuse_dir)) {
      RunResult r = Run({"umount", "-l", rec.fuse_dir});
      if (!r.ok() && failed(Status::Error(-EIO, "umount -l " + rec.fuse_dir + " failed: " + r.Trimmed())))
        return first;
    }
    rmdir(rec.fuse_dir.c_str());
  }
  unlink(d.AttachRecord(rec.volume).c_str());
  return first;
}

int Detach(const Args& a) {
  const std::string& what = a.positional()[0];
  if (geteuid() != 0) return Fail("detach needs root: it unmounts a filesystem and releases a block device");
  ClusterDir d = DirFor(a);
  auto lock = DirLock::Acquire(d);
  if (!lock.ok()) return Fail(lock.status);
  AttachRecord rec;
  bool found = false;
  if (ValidateVolumeName(what).ok()) {
    auto r = AttachRecord::Load(d, what);
    if (r.ok()) {
      rec = r.value;
      found = true;
    }
  }
  if (!found) {
    char real[PATH_MAX];
    std::string path = realpath(what.c_str(), real) ? real : what;
    for (const AttachRecord& r : ListAttachments(d))
      if (r.mountpoint == path) {
        rec = r;
        found = true;
      }
  }
  if (!found) return Fail("nothing is attached as '" + what + "' in " + d.dir + " (see `flurry status`)");
  if (Status s = Detach(d, rec, a.Has("force")); !s.ok())
    return Fail(s.ToString() + (a.Has("force") ? "\n(--force carried on past it)" : ""));
  printf("detached %s from %s\n", rec.volume.c_str(), rec.mountpoint.c_str());
  return 0;
}

}  // namespace flurry::cli
