// SPDX-License-Identifier: Apache-2.0
//
// Unit tests of the CLI's parts that need no cluster: argument parsing,
// size rendering, daemon names, cluster.conf and attach records.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "tools/cli/attach.h"
#include "tools/cli/cli.h"
#include "tools/cli/cluster_dir.h"
#include "tools/cli/disk_daemon.h"
#include "tools/cli/format.h"
#include "tools/cli/process.h"

namespace flurry::cli {
namespace {

Command TestCommand() {
  return {"volume create", "NAME --size SIZE", "test", "",
          {{"size", "SIZE", "size"}, {"daemon", "", "switch"}, {"read-only", "V", "repeat", true}},
          true, 1, 2, nullptr};
}

TEST(Args, FlagsAnywhereBothSpellings) {
  auto a = ParseArgs(TestCommand(), {"--size=1G", "vol", "--daemon", "--read-only", "a", "--read-only", "b", "x"});
  ASSERT_TRUE(a.ok()) << a.status.ToString();
  EXPECT_EQ(a.value.Get("size"), "1G");
  EXPECT_TRUE(a.value.Has("daemon"));
  EXPECT_EQ(a.value.GetAll("read-only"), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(a.value.positional(), (std::vector<std::string>{"vol", "x"}));
  EXPECT_EQ(a.value.Get("missing", "dflt"), "dflt");
}

TEST(Args, ClusterFlagsOnlyWhereAccepted) {
  Command c = TestCommand();
  EXPECT_TRUE(ParseArgs(c, {"v", "--dir", "/x", "--meta", "h:1"}).ok());
  c.cluster = false;
  EXPECT_FALSE(ParseArgs(c, {"v", "--meta", "h:1"}).ok());
}

TEST(Args, Errors) {
  Command c = TestCommand();
  auto msg = [&](std::vector<std::string> argv) { return ParseArgs(c, argv).status.message(); };
  EXPECT_NE(msg({"v", "--bogus"}).find("unknown option '--bogus'"), std::string::npos);
  EXPECT_NE(msg({"v", "-x"}).find("unknown option '-x'"), std::string::npos);
  EXPECT_NE(msg({"v", "--size"}).find("needs a value"), std::string::npos);
  EXPECT_NE(msg({"v", "--daemon=1"}).find("takes no value"), std::string::npos);
  EXPECT_NE(msg({"v", "--size", "1", "--size", "2"}).find("more than once"), std::string::npos);
  EXPECT_NE(msg({}).find("expected 1 to 2 arguments"), std::string::npos);
  EXPECT_NE(msg({"a", "b", "c"}).find("'c' is extra"), std::string::npos);
  // After "--" everything is positional.
  auto a = ParseArgs(c, {"--", "--size"});
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a.value.positional(), (std::vector<std::string>{"--size"}));
}

TEST(Args, Numbers) {
  EXPECT_EQ(ParseCount("--n", "42", 1, 100).value, 42u);
  EXPECT_FALSE(ParseCount("--n", "0", 1, 100).ok());
  EXPECT_FALSE(ParseCount("--n", "101", 1, 100).ok());
  EXPECT_FALSE(ParseCount("--n", "4x", 1, 100).ok());
  EXPECT_FALSE(ParseCount("--n", "", 1, 100).ok());
  EXPECT_FALSE(ParseCount("--n", "99999999999999999999", 1, 100).ok());
  EXPECT_EQ(ParseSizeArg("--size", "10G").value, 10ull << 30);
  EXPECT_NE(ParseSizeArg("--size", "10Q").status.message().find("K, M, G or T"), std::string::npos);
}

TEST(Format, CompactSizeRoundTrips) {
  EXPECT_EQ(CompactSize(0), "0");
  EXPECT_EQ(CompactSize(4097), "4097");
  EXPECT_EQ(CompactSize(64 << 10), "64K");
  EXPECT_EQ(CompactSize(1536ull << 20), "1536M");
  EXPECT_EQ(CompactSize(10ull << 30), "10G");
  EXPECT_EQ(CompactSize(2ull << 40), "2T");
  EXPECT_EQ(CompactSize(3ull << 50), "3072T");
  EXPECT_EQ(ModeText(WriteMode::kWriteThrough), "write-through");
  EXPECT_EQ(ModeText(WriteMode::kLog), "log (relaxed flush: prefix consistency)");
}

TEST(DiskDaemon, NamesEncodeVolumes) {
  EXPECT_EQ(ServeDaemonName({"a", "b.c"}), "disk-a+b.c");
  EXPECT_EQ(VolumesOfDaemon("disk-a+b.c"), (std::vector<std::string>{"a", "b.c"}));
  EXPECT_EQ(VolumesOfDaemon(AttachDaemonName("attach-x")), (std::vector<std::string>{"attach-x"}));
  EXPECT_EQ(VolumesOfDaemon("meta"), std::vector<std::string>{});
  EXPECT_EQ(BinaryForDaemon("meta"), "flurry-meta");
  EXPECT_EQ(BinaryForDaemon("ts12"), "flurry-tractserver");
  EXPECT_EQ(BinaryForDaemon("tsx"), "");
  EXPECT_EQ(BinaryForDaemon("disk-a"), "flurry-disk");
  EXPECT_EQ(BinaryForDaemon("attach-a"), "flurry-disk");
}

class DirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char t[] = "/tmp/flurry-cli-unit.XXXXXX";
    ASSERT_NE(mkdtemp(t), nullptr);
    d_.dir = t;
    ASSERT_TRUE(d_.MakeDirs().ok());
  }
  void TearDown() override { std::filesystem::remove_all(d_.dir); }
  ClusterDir d_;
};

TEST_F(DirTest, ConfRoundTrip) {
  ClusterConf c{HostPort{"127.0.0.1", 7123}, 5, 3, 250};
  ASSERT_TRUE(c.Write(d_.Conf()).ok());
  auto r = ClusterConf::Read(d_.Conf());
  ASSERT_TRUE(r.ok()) << r.status.ToString();
  EXPECT_EQ(r.value.meta.ToString(), "127.0.0.1:7123");
  EXPECT_EQ(r.value.servers, 5u);
  EXPECT_EQ(r.value.zones, 3u);
  EXPECT_EQ(r.value.delay_us, 250u);
  EXPECT_EQ(ClusterConf::Read(d_.dir + "/nope").status.code(), -ENOENT);
}

TEST_F(DirTest, AttachRecordRoundTrip) {
  AttachRecord r;
  r.volume = "vol";
  r.mountpoint = "/mnt/with space";
  r.method = "fuse-loop";
  r.daemon = "attach-vol";
  r.device = "/dev/loop3";
  r.backing = d_.FuseDir("vol") + "/vol";
  r.fuse_dir = d_.FuseDir("vol");
  r.fs = "ext4";
  r.mounted = true;
  ASSERT_TRUE(r.Save(d_).ok());
  auto l = AttachRecord::Load(d_, "vol");
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l.value.mountpoint, r.mountpoint);
  EXPECT_EQ(l.value.backing, r.backing);
  EXPECT_TRUE(l.value.mounted);
  auto all = ListAttachments(d_);
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].volume, "vol");
  EXPECT_FALSE(AttachRecord::Load(d_, "other").ok());
}

TEST_F(DirTest, StalePidFilesAreNotTrusted) {
  // Our own pid, but we are not flurry-meta: never to be signalled.
  FILE* f = fopen(d_.PidFile("meta").c_str(), "w");
  ASSERT_NE(f, nullptr);
  fprintf(f, "%d\n", getpid());
  fclose(f);
  auto ds = ListDaemons(d_.Pids());
  ASSERT_EQ(ds.size(), 1u);
  EXPECT_EQ(ds[0].name, "meta");
  EXPECT_FALSE(ds[0].alive);
}

TEST(Mounts, RootIsAMountPoint) {
  EXPECT_TRUE(IsMountPoint("/"));
  EXPECT_FALSE(IsMountPoint("/definitely/not/mounted"));
}

TEST(RunProgram, CapturesOutputAndStatus) {
  RunResult r = cli::Run({"sh", "-c", "echo out; echo err >&2; exit 3"});
  EXPECT_EQ(r.status, 3);
  EXPECT_NE(r.output.find("out"), std::string::npos);
  EXPECT_NE(r.output.find("err"), std::string::npos);
  EXPECT_EQ(cli::Run({"/nonexistent/program"}).status, 127);
}

}  // namespace
}  // namespace flurry::cli
