// SPDX-License-Identifier: Apache-2.0
#include <dirent.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "meta/meta_types.h"
#include "tools/cli/attach.h"

namespace flurry::cli {

Status AttachRecord::Save(const ClusterDir& d) const {
  std::string path = d.AttachRecord(volume), tmp = path + ".tmp";
  {
    std::ofstream out(tmp);
    out << "volume=" << volume << "\n"
        << "mountpoint=" << mountpoint << "\n"
        << "method=" << method << "\n"
        << "daemon=" << daemon << "\n"
        << "device=" << device << "\n"
        << "backing=" << backing << "\n"
        << "fuse_dir=" << fuse_dir << "\n"
        << "fs=" << fs << "\n"
        << "mounted=" << (mounted ? 1 : 0) << "\n";
    if (!out.flush()) return Status::Error(-EIO, "cannot write " + tmp);
  }
  if (rename(tmp.c_str(), path.c_str()) < 0)
    return ErrnoStatus("cannot write " + path);
  return Status::Ok();
}

StatusOr<AttachRecord> AttachRecord::Load(const ClusterDir& d, const std::string& volume) {
  std::string path = d.AttachRecord(volume);
  std::ifstream in(path);
  if (!in) return Status::Error(-ENOENT, "no attach record " + path);
  AttachRecord r;
  std::string line;
  while (std::getline(in, line)) {
    size_t eq = line.find('=');
    if (eq == std::string::npos) continue;
    std::string k = line.substr(0, eq), v = line.substr(eq + 1);
    if (k == "volume") r.volume = v;
    else if (k == "mountpoint") r.mountpoint = v;
    else if (k == "method") r.method = v;
    else if (k == "daemon") r.daemon = v;
    else if (k == "device") r.device = v;
    else if (k == "backing") r.backing = v;
    else if (k == "fuse_dir") r.fuse_dir = v;
    else if (k == "fs") r.fs = v;
    else if (k == "mounted") r.mounted = v == "1";
  }
  if (r.volume != volume) return Status::Error(-EINVAL, path + " is not an attach record of " + volume);
  return r;
}

std::vector<AttachRecord> ListAttachments(const ClusterDir& d) {
  std::vector<AttachRecord> out;
  DIR* dir = opendir(d.Attach().c_str());
  if (!dir) return out;
  while (dirent* e = readdir(dir)) {
    std::string name = e->d_name;
    if (!ValidateVolumeName(name).ok()) continue;  // ".", ".."
    auto r = AttachRecord::Load(d, name);
    if (r.ok()) out.push_back(r.value);
  }
  closedir(dir);
  std::sort(out.begin(), out.end(), [](const AttachRecord& a, const AttachRecord& b) { return a.volume < b.volume; });
  return out;
}

namespace {
// Mount points in mountinfo are octal-escaped: "\040" for a space.
std::string Unescape(const std::string& m) {
  std::string un;
  for (size_t i = 0; i < m.size(); ++i) {
    if (m[i] == '\\' && i + 3 < m.size() &&
        std::all_of(m.begin() + static_cast<long>(i) + 1, m.begin() + static_cast<long>(i) + 4,
                    [](char c) { return c >= '0' && c <= '7'; })) {
      un += static_cast<char>(std::stoi(m.substr(i + 1, 3), nullptr, 8));
      i += 3;
    } else {
      un += m[i];
    }
  }
  return un;
}
}  // namespace

std::string MountSource(const std::string& path) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line, source;
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string id, parent, devno, root, mnt, w;
    if (!(f >> id >> parent >> devno >> root >> mnt) || Unescape(mnt) != path) continue;
    while (f >> w && w != "-") {}
    std::string fstype, src;
    if (f >> fstype >> src) source = Unescape(src);  // later lines are mounted on top
  }
  return source;
}

}  // namespace flurry::cli
