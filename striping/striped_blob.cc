// SPDX-License-Identifier: Apache-2.0
#include "striping/striped_blob.h"

#include <cstring>
#include <map>
#include <memory>

#include "common/tract_protocol.h"

namespace flurry {

namespace {
// Fan-in of many piece completions into one callback.
struct Join {
  int pending = 1;  // held by the issuer until every piece is issued
  int err = 0;
  std::function<void(int)> done;
  void Arrive(int res) {
    if (res < 0 && err == 0) err = res;
    if (--pending == 0) done(err);
  }
};
// ForEachRun, with runs cut at tract offsets that are multiples of kMaxIo:
// every cut is chunk aligned, and a piece widened to whole chunks still fits
// one tract request.
template <typename Fn>
int ForEachIo(const StripeMap& map, uint64_t off, uint64_t len, Fn&& fn) {
  return map.ForEachRun(off, len, [&](const StripePiece& p) {
    uint64_t done = 0;
    while (done < p.length) {
      StripePiece q = p;
      q.tract_off += done;
      q.buf_off += done;
      uint64_t cut = (q.tract_off / tractproto::kMaxIo + 1) * tractproto::kMaxIo;
      q.length = std::min<uint64_t>(p.length - done, cut - q.tract_off);
      fn(q);
      done += q.length;
    }
  });
}
constexpr uint64_t kC = tractproto::kChunkSize;
}  // namespace

void StripedBlob::Read(uint64_t off, uint64_t len, uint8_t* buf, Done done) {
  auto j = std::make_shared<Join>();
  j->done = std::move(done);
  int r = ForEachIo(map_, off, len, [&](const StripePiece& p) {
    j->pending++;
    fds_->Read(blob_, p.tract, static_cast<uint32_t>(p.tract_off), static_cast<uint32_t>(p.length),
               buf + p.buf_off, [j](int res, std::vector<uint8_t>) { j->Arrive(res); });
  });
  j->Arrive(r < 0 ? r : 0);
}

void StripedBlob::Write(uint64_t off, uint64_t len, const uint8_t* buf, Done done) {
  auto j = std::make_shared<Join>();
  j->done = std::move(done);
  int r = ForEachIo(map_, off, len, [&](const StripePiece& p) {
    j->pending++;
    fds_->Write(blob_, p.tract, static_cast<uint32_t>(p.tract_off), static_cast<uint32_t>(p.length),
                buf + p.buf_off, 0, [j](int res) { j->Arrive(res); });
  });
  j->Arrive(r < 0 ? r : 0);
}

void StripedBlob::Zero(uint64_t off, uint64_t len, bool keep_alloc, Done done) {
  // Merge the pieces per tract first: a large trim touches each tract in a
  // few contiguous ranges, not once per stripe unit.
  std::map<uint64_t, std::vector<std::pair<uint64_t, uint64_t>>> per_tract;
  int r = map_.ForEachPiece(off, len, [&](const StripePiece& p) {
    auto& v = per_tract[p.tract];
    if (!v.empty() && v.back().second == p.tract_off) v.back().second += p.length;
    else v.emplace_back(p.tract_off, p.tract_off + p.length);
  });
  if (r < 0) return done(r);
  auto j = std::make_shared<Join>();
  j->done = std::move(done);
  for (auto& [tract, ranges] : per_tract) {
    for (auto [a, b] : ranges) {
      // FdsClient::Zero handles partial chunks at the ends (as merged writes).
      for (uint64_t s = a; s < b;) {
        uint64_t cut = (s / tractproto::kMaxIo + 1) * tractproto::kMaxIo;
        uint64_t n = std::min<uint64_t>(b, cut) - s;
        j->pending++;
        fds_->Zero(blob_, tract, static_cast<uint32_t>(s), static_cast<uint32_t>(n), keep_alloc,
                   [j](int res) { j->Arrive(res); });
        s += n;
      }
    }
  }
  j->Arrive(0);
}

void StripedBlob::Allocation(uint64_t off, uint64_t len, ExtentsDone done) {
  constexpr unsigned max_pieces = 64;
  // Collect up to max_pieces pieces, ask each tract for its bitmap, then
  // stitch extents together in virtual order.
  struct Piece {
    StripePiece p;
    std::vector<uint8_t> bitmap;
  };
  auto pieces = std::make_shared<std::vector<Piece>>();
  constexpr uint64_t kC = tractproto::kChunkSize;
  int r = ForEachIo(map_, off, len, [&](const StripePiece& p) {
    if (pieces->size() < max_pieces) pieces->push_back({p, {}});
  });
  if (r < 0) return done(r, {});
  auto j = std::make_shared<Join>();
  j->done = [pieces, done = std::move(done)](int res) {
    if (res < 0) return done(res, {});
    std::vector<BlockExtent> out;
    for (const Piece& pc : *pieces) {
      uint64_t pos = pc.p.tract_off, end = pc.p.tract_off + pc.p.length;
      uint64_t c0 = pos / kC;
      while (pos < end) {
        uint64_t c = pos / kC;
        bool alloc = (pc.bitmap.size() > (c - c0) / 8) && (pc.bitmap[(c - c0) / 8] >> ((c - c0) % 8) & 1);
        uint64_t next = std::min(end, (c + 1) * kC);
        uint32_t flags = alloc ? 0 : (kExtentHole | kExtentZero);
        if (!out.empty() && out.back().flags == flags) out.back().length += next - pos;
        else out.push_back({next - pos, flags});
        pos = next;
      }
    }
    done(0, std::move(out));
  };
  for (Piece& pc : *pieces) {
    j->pending++;
    fds_->Read(blob_, pc.p.tract, static_cast<uint32_t>(pc.p.tract_off), static_cast<uint32_t>(pc.p.length),
               nullptr, [j, bm = &pc.bitmap](int res, std::vector<uint8_t> bitmap) {
                 if (res == 0) *bm = std::move(bitmap);
                 j->Arrive(res);
               });
  }
  j->Arrive(0);
}

}  // namespace flurry
