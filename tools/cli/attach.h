// SPDX-License-Identifier: Apache-2.0
//
// Attachments: a volume made into a mounted local filesystem by `flurry
// attach`, recorded step by step in DIR/attach/VOLUME so that `flurry
// detach` (and `flurry cluster stop`) can reverse exactly what was done,
// even after a half-finished attach.
//
// Two ways, picked by what the kernel offers:
//   nbd:       flurry-disk on a free loopback port, `nbd-client 127.0.0.1
//              PORT /dev/nbdN -N VOLUME`, mount /dev/nbdN.
//   fuse-loop: flurry-disk exports DIR/fuse-VOLUME/VOLUME as a FUSE file,
//              `losetup -f --show --direct-io=on` (buffered if refused),
//              mount the loop device.
#pragma once

#include <string>
#include <vector>

#include "tools/cli/cluster_dir.h"

namespace flurry::cli {

struct AttachRecord {
  std::string volume;
  std::string mountpoint;  // absolute
  std::string method;      // "nbd" or "fuse-loop"
  std::string daemon;      // flurry-disk daemon name, once started
  std::string device;      // /dev/nbdN or /dev/loopN, once attached
  std::string backing;     // fuse-loop: the FUSE file behind the loop device
  std::string fuse_dir;    // fuse-loop: flurry-disk's FUSE mount
  std::string fs;          // filesystem on the device, once known
  bool mounted = false;

  Status Save(const ClusterDir& d) const;
  static StatusOr<AttachRecord> Load(const ClusterDir& d, const std::string& volume);
};

std::vector<AttachRecord> ListAttachments(const ClusterDir& d);

// Undoes rec, last step first: unmount, release the device (nbd-client -d
// or losetup -d), stop flurry-disk, drop its FUSE mount and the record.
// Stops at a step that fails (a busy mount point) and says what to do,
// unless force: then it unmounts lazily and carries on.
Status Detach(const ClusterDir& d, const AttachRecord& rec, bool force);

// The source (e.g. /dev/loop3) of the topmost mount at path (absolute,
// resolved), per /proc/self/mountinfo; "" if nothing is mounted there.
std::string MountSource(const std::string& path);
inline bool IsMountPoint(const std::string& path) { return !MountSource(path).empty(); }

}  // namespace flurry::cli
