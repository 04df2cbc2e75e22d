// SPDX-License-Identifier: Apache-2.0
//
// NbdServer in-process on a Loop thread, exercised with raw blocking
// sockets: good clients, misbehaving clients (each must get the right error
// or disconnect) while a concurrent good client sees no error, limits,
// NBD_CMD_DISC and Shutdown().
#include "nbdserver/server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "common/net.h"
#include "nbdserver/memory_device.h"
#include "nbdserver/nbd_protocol.h"

namespace flurry {
namespace {

using namespace flurry::nbd;

class TestClient {
 public:
  ~TestClient() { if (fd_ >= 0) close(fd_); }
  bool Connect(uint16_t port) {
    auto fd = ConnectTcp({"127.0.0.1", port}, 2000);
    if (!fd) return false;
    fd_ = *fd;
    timeval tv{5, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return true;
  }
  bool Send(const std::string& s) { return WriteAll(fd_, s.data(), s.size()) == 0; }
  bool Recv(void* p, size_t n) { return ReadAll(fd_, p, n) == 0; }
  std::string RecvN(size_t n) {
    std::string s(n, '\0');
    if (!Recv(s.data(), n)) return {};
    return s;
  }
  // True when the server closed the connection (EOF/reset) within 5 s.
  bool WaitClosed() {
    char buf[4096];
    for (;;) {
      ssize_t r = recv(fd_, buf, sizeof buf, 0);
      if (r == 0) return true;
      // EINTR: io_uring task work for a ring this thread set up in SetUp()
      // interrupts a recv() that has SO_RCVTIMEO (it is not restarted).
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) return errno == ECONNRESET;
    }
  }
  void Opt(uint32_t opt, const std::string& data) {
    std::string s;
    Append64(&s, kIHaveOpt);
    Append32(&s, opt);
    Append32(&s, static_cast<uint32_t>(data.size()));
    Send(s + data);
  }
  // Reads one option reply; returns its type.
  uint32_t OptReply(std::string* data = nullptr) {
    uint8_t h[20];
    if (!Recv(h, 20)) return 0;
    std::string d = RecvN(Get32(h + 16));
    if (data) *data = d;
    return Get32(h + 12);
  }
  // Fixed-newstyle handshake ending in NBD_OPT_GO. Returns tx flags.
  uint16_t Handshake(const std::string& name, bool structured) {
    uint8_t g[18];
    EXPECT_TRUE(Recv(g, 18));
    EXPECT_EQ(Get64(g), kNbdMagic);
    std::string f;
    Append32(&f, kClientFlagFixedNewstyle | kClientFlagNoZeroes);
    Send(f);
    if (structured) {
      Opt(kOptStructuredReply, "");
      EXPECT_EQ(OptReply(), kRepAck);
      std::string q;
      Append32(&q, static_cast<uint32_t>(name.size()));
      q += name;
      Append32(&q, 1);
      Append32(&q, 15);
      q += "base:allocation";
      Opt(kOptSetMetaContext, q);
      EXPECT_EQ(OptReply(), kRepMetaContext);
      EXPECT_EQ(OptReply(), kRepAck);
    }
    std::string go;
    Append32(&go, static_cast<uint32_t>(name.size()));
    go += name;
    Append16(&go, 0);
    Opt(kOptGo, go);
    uint16_t flags = 0;
    for (;;) {
      std::string d;
      uint32_t t = OptReply(&d);
      if (t == kRepInfo && Get16(reinterpret_cast<const uint8_t*>(d.data())) == kInfoExport) {
        flags = Get16(reinterpret_cast<const uint8_t*>(d.data()) + 10);
      }
      if (t != kRepInfo) {
        EXPECT_EQ(t, kRepAck);
        break;
      }
    }
    return flags;
  }
  void Request(uint16_t type, uint64_t cookie, uint64_t off, uint32_t len, uint16_t flags = 0,
               const std::string& payload = {}) {
    nbd::Request r{flags, type, cookie, off, len};
    std::string s(kRequestSize, '\0');
    EncodeRequest(r, reinterpret_cast<uint8_t*>(s.data()));
    Send(s + payload);
  }
  // Simple reply: returns error, sets cookie.
  uint32_t Simple(uint64_t* cookie) {
    uint8_t h[16];
    if (!Recv(h, 16)) return ~0u;
    EXPECT_EQ(Get32(h), kSimpleReplyMagic);
    *cookie = Get64(h + 8);
    return Get32(h + 4);
  }
  struct Chunk {
    uint16_t flags = 0, type = 0;
    uint64_t cookie = 0;
    std::string data;
  };
  Chunk ReadChunk() {
    uint8_t h[20];
    Chunk c;
    if (!Recv(h, 20)) return c;
    EXPECT_EQ(Get32(h), kStructuredReplyMagic);
    c.flags = Get16(h + 4);
    c.type = Get16(h + 6);
    c.cookie = Get64(h + 8);
    c.data = RecvN(Get32(h + 16));
    return c;
  }
  int fd() const { return fd_; }

 private:
  int fd_ = -1;
};

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override { StartServer({}); }
  void StartServer(NbdServerOptions opts) {
    auto l = Loop::Create();
    ASSERT_TRUE(l.ok());
    loop_ = std::move(*l);
    disk_ = std::make_unique<MemoryBlockDevice>(8 << 20, "disk");
    ro_ = std::make_unique<MemoryBlockDevice>(1 << 20, "ro");
    opts.default_export = "disk";
    server_ = std::make_unique<NbdServer>(loop_.get(), opts);
    server_->AddExport("disk", disk_.get());
    server_->AddExport("ro", ro_.get(), true);
    ASSERT_TRUE(server_->ListenTcp({"127.0.0.1", 0}).ok());
    port_ = server_->tcp_port();
    thread_ = std::thread([this] { loop_->Run(); });
  }
  void TearDown() override {
    if (!thread_.joinable()) return;
    loop_->PostFromAnyThread([this] { server_->Shutdown([this] { loop_->Stop(); }); });
    thread_.join();
  }
  std::map<std::string, ExportStats> Stats() {
    std::atomic<bool> done{false};
    std::map<std::string, ExportStats> s;
    loop_->PostFromAnyThread([&] { s = server_->Stats(); done = true; });
    while (!done) usleep(1000);
    return s;
  }

  std::unique_ptr<Loop> loop_;
  std::unique_ptr<MemoryBlockDevice> disk_, ro_;
  std::unique_ptr<NbdServer> server_;
  uint16_t port_ = 0;
  std::thread thread_;
};

TEST_F(ServerTest, SimpleRepliesRoundTrip) {
  TestClient c;
  ASSERT_TRUE(c.Connect(port_));
  uint16_t flags = c.Handshake("disk", false);
  EXPECT_TRUE(flags & kTxSendFua);
  std::string data(65536, 'a');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 7);
  c.Request(kCmdWrite, 1, 4096, 65536, kCmdFlagFua, data);
  uint64_t cookie;
  EXPECT_EQ(c.Simple(&cookie), 0u);
  EXPECT_EQ(cookie, 1u);
  c.Request(kCmdRead, 2, 4096, 65536);
  EXPECT_EQ(c.Simple(&cookie), 0u);
  EXPECT_EQ(c.RecvN(65536), data);
  c.Request(kCmdFlush, 3, 0, 0);
  EXPECT_EQ(c.Simple(&cookie), 0u);
  c.Request(kCmdWriteZeroes, 4, 4096, 4096, kCmdFlagNoHole);
  EXPECT_EQ(c.Simple(&cookie), 0u);
  c.Request(kCmdTrim, 5, 0, 8 << 20);
  EXPECT_EQ(c.Simple(&cookie), 0u);
  c.Request(kCmdDisc, 6, 0, 0);
  EXPECT_TRUE(c.WaitClosed());
  auto s = Stats()["disk"];
  EXPECT_EQ(s.writes, 1u);
  EXPECT_EQ(s.reads, 1u);
  EXPECT_EQ(s.bytes_written, 65536u);
  EXPECT_EQ(s.flushes, 1u);
  EXPECT_EQ(s.trims, 1u);
  EXPECT_EQ(s.zeroes, 1u);
  EXPECT_EQ(s.errors, 0u);
}

TEST_F(ServerTest, StructuredReadsAndBlockStatus) {
  TestClient c;
  ASSERT_TRUE(c.Connect(port_));
  EXPECT_TRUE(c.Handshake("", true) & kTxSendDf);
  c.Request(kCmdWrite, 1, 0, 8192, 0, std::string(8192, 'x'));
  uint64_t cookie;
  EXPECT_EQ(c.Simple(&cookie), 0u);
  c.Request(kCmdRead, 2, 4096, 8192, kCmdFlagDf);
  auto ch = c.ReadChunk();
  EXPECT_EQ(ch.type, kReplyTypeOffsetData);
  EXPECT_EQ(ch.flags, kReplyFlagDone);
  ASSERT_EQ(ch.data.size(), 8u + 8192);
  EXPECT_EQ(Get64(reinterpret_cast<const uint8_t*>(ch.data.data())), 4096u);
  EXPECT_EQ(ch.data.substr(8, 4096), std::string(4096, 'x'));
  EXPECT_EQ(ch.data.substr(8 + 4096), std::string(4096, '\0'));
  c.Request(kCmdBlockStatus, 3, 0, 1 << 20);
  ch = c.ReadChunk();
  EXPECT_EQ(ch.type, kReplyTypeBlockStatus);
  auto* p = reinterpret_cast<const uint8_t*>(ch.data.data());
  ASSERT_EQ(ch.data.size(), 4u + 16);
  EXPECT_EQ(Get32(p), 1u);
  EXPECT_EQ(Get32(p + 4), 8192u);
  EXPECT_EQ(Get32(p + 8), 0u);
  EXPECT_EQ(Get32(p + 12), (1u << 20) - 8192);
  EXPECT_EQ(Get32(p + 16), kStateHole | kStateZero);
  c.Request(kCmdBlockStatus, 4, 0, 1 << 20, kCmdFlagReqOne);
  ch = c.ReadChunk();
  EXPECT_EQ(ch.data.size(), 4u + 8);
  // A read past the end answers with an error chunk.
  c.Request(kCmdRead, 5, 8 << 20, 4096);
  ch = c.ReadChunk();
  EXPECT_EQ(ch.type, kReplyTypeError);
  EXPECT_EQ(ch.cookie, 5u);
  EXPECT_EQ(Get32(reinterpret_cast<const uint8_t*>(ch.data.data())), kEInval);
}

TEST_F(ServerTest, PipelinedRequestsAllAnswered) {
  TestClient c;
  ASSERT_TRUE(c.Connect(port_));
  c.Handshake("disk", false);
  std::string batch;
  constexpr int kN = 300;  // more than max_inflight: exercises pausing
  for (int i = 0; i < kN; ++i) {
    nbd::Request r{0, kCmdWrite, uint64_t(i), uint64_t(i) * 4096, 4096};
    std::string h(kRequestSize, '\0');
    EncodeRequest(r, reinterpret_cast<uint8_t*>(h.data()));
    batch += h + std::string(4096, static_cast<char>(i));
  }
  std::thread sender([&] { c.Send(batch); });
  std::vector<bool> seen(kN);
  for (int i = 0; i < kN; ++i) {
    uint64_t cookie = ~0ull;
    ASSERT_EQ(c.Simple(&cookie), 0u);
    ASSERT_LT(cookie, uint64_t(kN));
    seen[cookie] = true;
  }
  sender.join();
  for (int i = 0; i < kN; ++i) EXPECT_TRUE(seen[i]);
}

// A good client keeps verifying reads and writes while bad clients misbehave.
TEST_F(ServerTest, BadClientsDoNotDisturbGoodClient) {
  std::atomic<bool> stop{false};
  std::atomic<int> good_errors{0}, good_ops{0};
  std::thread good([&] {
    TestClient c;
    if (!c.Connect(port_)) { ++good_errors; return; }
    c.Handshake("disk", false);
    for (uint64_t i = 0; !stop; ++i) {
      std::string d(4096, static_cast<char>(i));
      uint64_t off = (1 << 20) + (i % 64) * 4096, ck;
      c.Request(kCmdWrite, i, off, 4096, 0, d);
      if (c.Simple(&ck) != 0 || ck != i) ++good_errors;
      c.Request(kCmdRead, i, off, 4096);
      if (c.Simple(&ck) != 0 || c.RecvN(4096) != d) ++good_errors;
      ++good_ops;
    }
  });

  {  // garbage handshake
    TestClient c;
    ASSERT_TRUE(c.Connect(port_));
    c.RecvN(18);
    c.Send(std::string(64, '\xee'));
    EXPECT_TRUE(c.WaitClosed());
  }
  {  // requests past the end, unknown command, bad flags, read-only write
    TestClient c;
    ASSERT_TRUE(c.Connect(port_));
    c.Handshake("disk", false);
    uint64_t ck;
    c.Request(kCmdRead, 1, (8 << 20) - 512, 4096);
    EXPECT_EQ(c.Simple(&ck), kEInval);
    c.Request(kCmdWrite, 2, (8 << 20) - 512, 4096, 0, std::string(4096, 'z'));
    EXPECT_EQ(c.Simple(&ck), kENoSpc);
    c.Request(99, 3, 0, 512);
    EXPECT_EQ(c.Simple(&ck), kEInval);
    EXPECT_EQ(ck, 3u);
    c.Request(kCmdRead, 4, 0, 0);
    EXPECT_EQ(c.Simple(&ck), kEInval);
    c.Request(kCmdRead, 5, 0, 64 << 20);  // over max payload
    EXPECT_EQ(c.Simple(&ck), kEInval);
    c.Request(kCmdWrite, 6, 0, 8 << 20, 0, std::string(8 << 20, 'q'));  // over max: drained
    EXPECT_EQ(c.Simple(&ck), kEInval);
    c.Request(kCmdBlockStatus, 7, 0, 512);  // not negotiated
    EXPECT_EQ(c.Simple(&ck), kEInval);
    c.Request(kCmdRead, 8, 0, 512);  // still usable
    EXPECT_EQ(c.Simple(&ck), 0u);
    c.RecvN(512);
  }
  {  // read-only export
    TestClient c;
    ASSERT_TRUE(c.Connect(port_));
    EXPECT_TRUE(c.Handshake("ro", false) & kTxReadOnly);
    uint64_t ck;
    c.Request(kCmdWrite, 1, 0, 512, 0, std::string(512, 'r'));
    EXPECT_EQ(c.Simple(&ck), kEPerm);
    c.Request(kCmdTrim, 2, 0, 512);
    EXPECT_EQ(c.Simple(&ck), kEPerm);
  }
  {  // oversized write payload: disconnect
    TestClient c;
    ASSERT_TRUE(c.Connect(port_));
    c.Handshake("disk", false);
    c.Request(kCmdWrite, 1, 0, 64u << 20);
    EXPECT_TRUE(c.WaitClosed());
  }
  {  // bad request magic: disconnect
    TestClient c;
    ASSERT_TRUE(c.Connect(port_));
    c.Handshake("disk", false);
    c.Send(std::string(kRequestSize, '\x01'));
    EXPECT_TRUE(c.WaitClosed());
  }
  for (int i = 0; i < 20; ++i) {  // vanishing mid-request / mid-handshake
    TestClient c;
    ASSERT_TRUE(c.Connect(port_));
    if (i % 2) {
      c.Handshake("disk", false);
      c.Request(kCmdWrite, 1, 0, 65536, 0, std::string(1000, 'v'));
    } else {
      c.RecvN(10);
    }
    linger lg{1, 0};  // RST on close
    setsockopt(c.fd(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  }
  while (good_ops < 50) usleep(1000);
  stop = true;
  good.join();
  EXPECT_EQ(good_errors, 0);
  EXPECT_GT(Stats()["disk"].errors, 0u);
}

TEST_F(ServerTest, UnknownExportAndAbort) {
  TestClient c;
  ASSERT_TRUE(c.Connect(port_));
  c.RecvN(18);
  std::string f;
  Append32(&f, kClientFlagFixedNewstyle);
  c.Send(f);
  std::string go;
  Append32(&go, 4);
  go += "nope";
  Append16(&go, 0);
  c.Opt(kOptGo, go);
  EXPECT_EQ(c.OptReply(), kRepErrUnknown);
  c.Opt(kOptAbort, "");
  EXPECT_EQ(c.OptReply(), kRepAck);
  EXPECT_TRUE(c.WaitClosed());
}

TEST_F(ServerTest, DiscAnswersInflightThenCloses) {
  TestClient c;
  ASSERT_TRUE(c.Connect(port_));
  c.Handshake("disk", false);
  std::string batch;
  for (int i = 0; i < 10; ++i) {
    nbd::Request r{0, kCmdRead, uint64_t(i), 0, 4096};
    std::string h(kRequestSize, '\0');
    EncodeRequest(r, reinterpret_cast<uint8_t*>(h.data()));
    batch += h;
  }
  nbd::Request d{0, kCmdDisc, 99, 0, 0};
  std::string h(kRequestSize, '\0');
  EncodeRequest(d, reinterpret_cast<uint8_t*>(h.data()));
  c.Send(batch + h);
  for (int i = 0; i < 10; ++i) {
    uint64_t ck;
    ASSERT_EQ(c.Simple(&ck), 0u);
    c.RecvN(4096);
  }
  EXPECT_TRUE(c.WaitClosed());
}

class LimitTest : public ServerTest {
 protected:
  void SetUp() override {
    NbdServerOptions o;
    o.max_connections = 2;
    o.handshake_timeout_ms = 300;
    StartServer(o);
  }
};

TEST_F(LimitTest, MaxConnectionsAndHandshakeTimeout) {
  TestClient a, b, c;
  ASSERT_TRUE(a.Connect(port_));
  ASSERT_TRUE(b.Connect(port_));
  a.Handshake("disk", false);
  b.Handshake("disk", false);
  ASSERT_TRUE(c.Connect(port_));
  EXPECT_TRUE(c.WaitClosed());  // refused: limit reached
  TestClient d;
  b.Request(kCmdDisc, 0, 0, 0);
  EXPECT_TRUE(b.WaitClosed());
  ASSERT_TRUE(d.Connect(port_));
  EXPECT_EQ(d.RecvN(18).size(), 18u);  // a slot is free again
  EXPECT_TRUE(d.WaitClosed());         // but it never negotiates: timeout
}

TEST_F(ServerTest, ShutdownClosesClients) {
  TestClient c;
  ASSERT_TRUE(c.Connect(port_));
  c.Handshake("disk", false);
  std::atomic<bool> done{false};
  loop_->PostFromAnyThread([&] { server_->Shutdown([&] { done = true; loop_->Stop(); }); });
  EXPECT_TRUE(c.WaitClosed());
  thread_.join();
  EXPECT_TRUE(done);
  TestClient late;
  EXPECT_FALSE(late.Connect(port_));
}

}  // namespace
}  // namespace flurry
