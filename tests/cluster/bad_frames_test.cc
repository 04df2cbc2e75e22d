// SPDX-License-Identifier: Apache-2.0
//
// Malformed tract protocol frames sent over raw sockets to a running
// flurry-tractserver. Each gets what common/tract_protocol.h and
// tractserver/server.h promise:
//   - bad magic, bad version, bad header checksum, payload_len over
//     kMaxPayload, a WRITE whose payload_len != length: the connection is
//     closed (no reply);
//   - unknown opcode: -EOPNOTSUPP; offset/length beyond the tract, bad
//     tract size: -EINVAL; wrong payload checksum: -EBADMSG; a tlt_version
//     older than the server's: -ESTALE — each on a connection that stays
//     usable, and nothing is written.
// Meanwhile a well-behaved FdsClient on another thread keeps doing verified
// IO against the same servers and must see no error at all.
#include <gtest/gtest.h>

#include <atomic>
#include <csignal>
#include <thread>

#include "tests/cluster/cluster_fixture.h"
#include "tests/cluster/raw_tract_conn.h"
#include "tests/cluster/workload.h"

namespace flurry::testing {
namespace {

using namespace tractproto;

constexpr uint32_t kTract = 256u << 10;

// Verified random IO on its own loop and thread until stopped.
class GoodClient {
 public:
  void Start(HostPort meta, BlobRef blob, uint64_t size) {
    th_ = std::thread([this, meta, blob, size] { Body(meta, blob, size); });
  }
  void StopAndJoin() {
    stop_ = true;
    if (th_.joinable()) th_.join();
  }
  uint64_t completed() const { return completed_.load(); }

  // Valid after StopAndJoin().
  std::string why;
  bool ran = false, verified = false;
  WorkloadStats stats;
  FdsStats fds;
  std::vector<std::string> errors;

 private:
  void Body(HostPort meta, BlobRef blob, uint64_t size) {
    auto loop = Loop::Create(256);
    if (!loop) {
      why = "io_uring: " + errstr(loop.err());
      return;
    }
    FdsClient::Options o;
    o.meta = meta;
    Status st;
    auto c = FdsClient::Create(loop->get(), o, &st);
    if (!c) {
      why = st.ToString();
      return;
    }
    {
      WorkloadOptions wo;
      wo.ops = 0;  // until stopped
      wo.qd = 8;
      wo.max_len = 128u << 10;
      wo.seed = 99;
      wo.timeout_ms = 100000;
      Workload w(loop->get(), c->get(), blob, size, wo);
      ran = w.Run([&] {
        completed_++;
        if (stop_) w.Stop();
      });
      verified = w.VerifyAll();
      stats = w.stats();
      errors = w.errors();
      fds = (*c)->stats();
    }
    c->reset();
    for (int i = 0; i < 5; ++i) (*loop)->RunOnce(10);
  }

  std::thread th_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> completed_{0};
};

class BadFrames : public ClusterTest {
 protected:
  // A blob of our own, so raw writes never touch the good client's data.
  static constexpr uint64_t kHi = 0xbad0bad0bad0bad0ull, kLo = 7;

  RequestHeader Hdr(uint16_t op, uint32_t off, uint32_t len, const void* payload = nullptr,
                    uint32_t payload_len = 0) {
    return RawTractConn::Header(op, kHi, kLo, 0, kTract, off, len, payload, payload_len);
  }

  // A fresh connection to the target server.
  std::unique_ptr<RawTractConn> Conn() {
    auto c = std::make_unique<RawTractConn>();
    EXPECT_EQ(c->Connect(target_), 0);
    return c;
  }

  // The connection still works: a PING gets status 0.
  void ExpectUsable(RawTractConn* c, const std::string& what) {
    auto h = RawTractConn::Header(kOpPing, 0, 0, 0, 0, 0, 0);
    auto rep = c->Call(h);
    ASSERT_EQ(rep.res, 0) << what << ": connection unusable afterwards";
    EXPECT_EQ(rep.hdr.status, 0) << what;
    EXPECT_EQ(rep.hdr.id, h.id) << what;
  }

  // Sends the bytes on a new connection and expects the server to close it
  // without a reply; the server must keep serving others.
  void ExpectClosed(const std::string& what, const void* bytes, size_t n) {
    SCOPED_TRACE(what);
    auto c = Conn();
    (void)c->SendBytes(bytes, n);  // may fail midway once the server closed
    EXPECT_TRUE(c->ClosedByPeer()) << what << ": connection not closed";
    expected_protocol_errors_++;
    auto other = Conn();
    ExpectUsable(other.get(), what);
  }

  // Sends a request and expects an error reply on a connection that stays up.
  void ExpectStatus(const std::string& what, const RequestHeader& h, int status,
                    const std::vector<uint8_t>& payload = {}) {
    SCOPED_TRACE(what);
    auto c = Conn();
    auto rep = c->Call(h, payload.data(), payload.size());
    ASSERT_EQ(rep.res, 0) << what << ": no reply (" << errstr(rep.res) << ")";
    EXPECT_EQ(rep.hdr.status, status) << what << ": got " << errstr(rep.hdr.status);
    EXPECT_EQ(rep.hdr.id, h.id) << what;
    EXPECT_EQ(rep.hdr.payload_len, 0u) << what;
    ExpectUsable(c.get(), what);
  }

  // Nothing of our blob is allocated on the target (no bad request wrote).
  void ExpectNothingWritten(const std::string& what) {
    auto c = Conn();
    auto rep = c->Call(Hdr(kOpStatTract, 0, 0));
    ASSERT_EQ(rep.res, 0);
    ASSERT_EQ(rep.hdr.status, 0);
    for (uint8_t b : rep.payload) ASSERT_EQ(b, 0) << what << ": a rejected request allocated chunks";
  }

  uint64_t ServerCounter(const std::string& key) {
    auto c = Conn();
    auto rep = c->Call(RawTractConn::Header(kOpStatServer, 0, 0, 0, 0, 0, 0));
    EXPECT_EQ(rep.res, 0);
    std::string text(rep.payload.begin(), rep.payload.end());
    size_t p = text.find("\n" + key + "=");
    if (p == std::string::npos) return UINT64_MAX;
    return strtoull(text.c_str() + p + key.size() + 2, nullptr, 10);
  }

  std::string target_;
  uint64_t expected_protocol_errors_ = 0;
};

TEST_F(BadFrames, EachGetsItsDocumentedAnswerAndGoodClientSeesNoError) {
  signal(SIGPIPE, SIG_IGN);
  ASSERT_NO_FATAL_FAILURE(StartCluster(2, /*heartbeat_timeout_ms=*/20000));
  const uint64_t size = 8ull << 20;
  VolumeInfo v = CreateVolume("good", size, kTract, 2);
  target_ = cluster_->server_addr(0);

  GoodClient good;
  good.Start(cluster_->meta(), Blob(v), size);
  ASSERT_TRUE(RunUntil(loop_.get(), [&] { return good.completed() >= 20; }, 30000))
      << "good client makes no progress";
  uint64_t protocol_errors0 = ServerCounter("protocol_errors");

  std::vector<uint8_t> data(4096, 0x5a);
  // ---- framing violations: the connection is closed ----
  {
    auto h = Hdr(kOpRead, 0, 4096);
    h.magic = 0x12345678;
    SealHeader(&h);
    ExpectClosed("bad magic", &h, sizeof h);
  }
  {
    auto h = Hdr(kOpRead, 0, 4096);
    h.version = kVersion + 1;
    SealHeader(&h);
    ExpectClosed("bad version", &h, sizeof h);
  }
  {
    auto h = Hdr(kOpRead, 0, 4096);
    h.header_sum ^= 0x80;
    ExpectClosed("bad header checksum", &h, sizeof h);
  }
  {
    auto h = Hdr(kOpWrite, 0, 4096, data.data(), 4096);
    h.tract ^= 1;  // any bit flipped after sealing
    ExpectClosed("header corrupted after sealing", &h, sizeof h);
  }
  {
    auto h = Hdr(kOpWrite, 0, kMaxIo);
    h.payload_len = kMaxPayload + 1;
    SealHeader(&h);
    ExpectClosed("oversized payload_len", &h, sizeof h);
  }
  {
    auto h = Hdr(kOpWrite, 0, 4096);
    h.payload_len = 0xffffffffu;
    SealHeader(&h);
    ExpectClosed("payload_len 4 GiB", &h, sizeof h);
  }
  {
    auto h = Hdr(kOpWrite, 0, 8192, data.data(), 4096);  // length says 8 KiB, payload 4 KiB
    std::vector<uint8_t> frame(sizeof h);
    memcpy(frame.data(), &h, sizeof h);
    frame.insert(frame.end(), data.begin(), data.end());
    ExpectClosed("write payload_len != length", frame.data(), frame.size());
  }
  {
    auto h = Hdr(kOpRead, 0, 4096, data.data(), 4096);  // a read with a payload
    std::vector<uint8_t> frame(sizeof h);
    memcpy(frame.data(), &h, sizeof h);
    frame.insert(frame.end(), data.begin(), data.end());
    ExpectClosed("read with payload", frame.data(), frame.size());
  }
  {
    std::vector<uint8_t> junk(256 << 10);
    uint64_t x = 88172645463325252ull;
    for (auto& b : junk) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      b = static_cast<uint8_t>(x);
    }
    ExpectClosed("256 KiB of random bytes", junk.data(), junk.size());
  }
  {
    // Half a header, then the client goes away: the server must simply
    // drop the connection (no protocol error counted: it never saw one).
    auto h = Hdr(kOpRead, 0, 4096);
    auto c = Conn();
    ASSERT_EQ(c->SendBytes(&h, sizeof h / 2), 0);
    c->Close();
    auto other = Conn();
    ExpectUsable(other.get(), "after a truncated header");
  }

  // ---- bad parameters: an error reply, the connection survives ----
  {
    auto h = Hdr(kOpRead, 0, 4096);
    h.op = 42;
    SealHeader(&h);
    ExpectStatus("unknown opcode 42", h, -EOPNOTSUPP);
    h.op = 0;
    SealHeader(&h);
    ExpectStatus("opcode 0", h, -EOPNOTSUPP);
  }
  ExpectStatus("read offset beyond the tract", Hdr(kOpRead, kTract, 1), -EINVAL);
  ExpectStatus("read crossing the tract end", Hdr(kOpRead, kTract - 100, 4096), -EINVAL);
  ExpectStatus("write crossing the tract end", Hdr(kOpWrite, kTract - 1000, 4096, data.data(), 4096),
               -EINVAL, data);
  ExpectStatus("zero length", Hdr(kOpRead, 0, 0), -EINVAL);
  ExpectStatus("length over kMaxIo", Hdr(kOpRead, 0, kMaxIo + 4096), -EINVAL);
  {
    auto h = Hdr(kOpRead, 0, 4096);
    h.tract_size = 3 * 65536;
    SealHeader(&h);
    ExpectStatus("tract size not a power of two", h, -EINVAL);
  }
  {
    auto h = Hdr(kOpWrite, 0, 4096, data.data(), 4096);
    h.payload_sum ^= 1;
    SealHeader(&h);
    ExpectStatus("wrong payload checksum", h, -EBADMSG, data);
    std::vector<uint8_t> flipped = data;
    flipped[100] ^= 4;
    ExpectStatus("payload corrupted in transit", Hdr(kOpWrite, 0, 4096, data.data(), 4096), -EBADMSG,
                 flipped);
  }
  ExpectNothingWritten("after bad parameters");

  // ---- stale TLT version ----
  // A new server registering bumps the TLT version; the tract servers learn
  // it from their next heartbeat.
  Status why;
  auto reg = cluster_->MetaCall("REGISTER 00000000deadbeef 127.0.0.1:9 z9", &why);
  ASSERT_TRUE(reg.ok()) << why.ToString();
  uint64_t tlt = 0;
  ASSERT_TRUE(RunUntil(loop_.get(), [&] {
    auto c = Conn();
    auto rep = c->Call(RawTractConn::Header(kOpPing, 0, 0, 0, 0, 0, 0));
    tlt = rep.hdr.tlt_version;
    return rep.res == 0 && tlt >= 2;
  }, 10000)) << "tract server never learned the new TLT version (" << tlt << ")";
  {
    auto h = Hdr(kOpWrite, 0, 4096, data.data(), 4096);
    h.tlt_version = tlt - 1;
    SealHeader(&h);
    ExpectStatus("stale tlt_version", h, -ESTALE, data);
    ExpectNothingWritten("after a stale write");
    h.tlt_version = tlt;
    SealHeader(&h);
    ExpectStatus("current tlt_version", h, 0, data);
  }

  // Every framing violation was counted; the good client kept going.
  EXPECT_EQ(ServerCounter("protocol_errors") - protocol_errors0, expected_protocol_errors_);
  uint64_t mark = good.completed();
  EXPECT_TRUE(RunUntil(loop_.get(), [&] { return good.completed() >= mark + 50; }, 60000))
      << "good client stalled after the bad frames";
  good.StopAndJoin();
  ASSERT_TRUE(good.why.empty()) << good.why;
  printf("good client: writes=%llu reads=%llu retries=%llu tlt_refreshes=%llu\n",
         (unsigned long long)good.stats.writes, (unsigned long long)good.stats.reads,
         (unsigned long long)good.fds.retries, (unsigned long long)good.fds.tlt_refreshes);
  EXPECT_TRUE(good.ran);
  EXPECT_TRUE(good.verified);
  for (const auto& e : good.errors) ADD_FAILURE() << "good client: " << e;
  EXPECT_EQ(good.stats.failed, 0u);
  EXPECT_EQ(good.stats.read_mismatches, 0u);
  EXPECT_GT(good.stats.writes, 20u);
}

}  // namespace
}  // namespace flurry::testing
