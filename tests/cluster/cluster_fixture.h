// SPDX-License-Identifier: Apache-2.0
//
// ClusterTest: a GoogleTest fixture that runs a real local cluster
// (flurry-meta + N flurry-tractservers on loopback, see
// tools/bench/local_cluster.h) in a fresh temp directory.
//
// - Binaries come from $FLURRY_META_BIN and $FLURRY_TRACTSERVER_BIN (meson
//   sets them); without them the test is skipped.
// - The directory is $TMPDIR/flurry-cluster-XXXXXX (TMPDIR must be on a
//   filesystem with O_DIRECT). On failure it is kept, its path and the tail
//   of every process log are printed; on success it is removed.
// - The loop and the client live on the test thread; RunUntil() drives it.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "common/loop.h"
#include "fdsclient/fds_client.h"
#include "tools/bench/local_cluster.h"

namespace flurry::testing {

class ClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* meta = getenv("FLURRY_META_BIN");
    const char* ts = getenv("FLURRY_TRACTSERVER_BIN");
    if (!meta || !ts) GTEST_SKIP() << "FLURRY_META_BIN / FLURRY_TRACTSERVER_BIN not set (run via meson test)";
    meta_bin_ = meta;
    ts_bin_ = ts;
    const char* tmp = getenv("TMPDIR");
    std::string tmpl = std::string(tmp && *tmp ? tmp : "/tmp") + "/flurry-cluster-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr) << "mkdtemp " << tmpl << ": " << strerror(errno);
    root_ = tmpl;
    auto l = Loop::Create(1024);
    ASSERT_TRUE(l.ok()) << "io_uring: " << errstr(l.err());
    loop_ = std::move(*l);
  }

  void TearDown() override {
    if (client_) {
      client_.reset();
      for (int i = 0; i < 5; ++i) loop_->RunOnce(10);  // let cancellations land
    }
    bool failed = HasFailure();
    std::string tails;
    if (cluster_) {
      if (failed) tails = cluster_->LogTails(30);
      cluster_.reset();
    }
    loop_.reset();
    if (root_.empty()) return;
    if (failed) {
      fprintf(stderr, "%s\n*** test failed: cluster directory and logs kept in %s\n", tails.c_str(),
              root_.c_str());
    } else {
      std::error_code ec;
      std::filesystem::remove_all(root_, ec);
    }
  }

  // Starts the cluster; heartbeat_timeout_ms decides how fast a killed
  // server is replaced in the TLT.
  void StartCluster(int servers, uint64_t heartbeat_timeout_ms = 1500,
                    std::vector<std::string> server_args = {}) {
    LocalCluster::Options o;
    o.meta_bin = meta_bin_;
    o.tractserver_bin = ts_bin_;
    o.root = root_;
    o.servers = servers;
    o.heartbeat_timeout_ms = heartbeat_timeout_ms;
    o.server_args = std::move(server_args);
    // Printed up front so that a test killed by its timeout still says
    // where its logs are.
    printf("cluster directory: %s\n", root_.c_str());
    fflush(stdout);
    Status why;
    auto c = LocalCluster::Start(o, &why);
    ASSERT_TRUE(c.ok()) << why.ToString();
    cluster_ = std::move(*c);
  }

  VolumeInfo CreateVolume(const std::string& name, uint64_t size, uint32_t tract_size, uint32_t replicas) {
    Status why;
    auto v = cluster_->CreateVolume(name, size, tract_size, replicas, &why);
    EXPECT_TRUE(v.ok()) << why.ToString();
    return v.ok() ? *v : VolumeInfo{};
  }

  static BlobRef Blob(const VolumeInfo& v) { return BlobRef{v.blob_hi, v.blob_lo, v.tract_size, v.replicas}; }

  // A client of the cluster (fetches the TLT: create volumes first).
  FdsClient* Client(uint32_t op_deadline_ms = 60000, uint32_t request_timeout_ms = 5000,
                    bool local_sockets = true) {
    FdsClient::Options o;
    o.meta = cluster_->meta();
    o.local_sockets = local_sockets;
    o.op_deadline_ms = op_deadline_ms;
    o.request_timeout_ms = request_timeout_ms;
    Status why;
    auto c = FdsClient::Create(loop_.get(), o, &why);
    EXPECT_TRUE(c.ok()) << why.ToString();
    if (!c.ok()) return nullptr;
    client_ = std::move(*c);
    return client_.get();
  }

  std::string meta_bin_, ts_bin_, root_;
  std::unique_ptr<Loop> loop_;
  std::unique_ptr<LocalCluster> cluster_;
  std::unique_ptr<FdsClient> client_;
};

}  // namespace flurry::testing
