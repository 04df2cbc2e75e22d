// SPDX-License-Identifier: Apache-2.0
//
// RangeLock: orders operations on overlapping byte ranges by arrival.
// Acquire() runs `go` once no earlier-arrived holder or waiter overlaps the
// range (exclusive) — immediately if possible, else from Release() of the
// last conflicting holder. Loop thread only; not thread-safe.
//
// Used by the write modes so that two overlapping writes are never in
// flight at once: replicas then apply them in the same order.
#pragma once

#include <cstdint>
#include <functional>
#include <list>
#include <vector>

namespace flurry {

class RangeLock {
 public:
  struct Handle;
  using Go = std::function<void(Handle*)>;

  // Calls go(handle) now or later; pass the handle to Release().
  void Acquire(uint64_t off, uint64_t len, Go go);
  void Release(Handle* h);
  size_t held() const { return entries_.size(); }

  struct Handle {
    uint64_t begin, end;
    bool granted = false;
    Go go;
  };

 private:
  std::list<Handle> entries_;  // arrival order
};

inline void RangeLock::Acquire(uint64_t off, uint64_t len, Go go) {
  entries_.push_back(Handle{off, off + len, false, std::move(go)});
  Handle* h = &entries_.back();
  for (auto& e : entries_) {
    if (&e == h) break;
    if (e.begin < h->end && h->begin < e.end) return;  // waits
  }
  h->granted = true;
  Go g = std::move(h->go);
  g(h);
}

inline void RangeLock::Release(Handle* h) {
  uint64_t b = h->begin, e = h->end;
  for (auto it = entries_.begin(); it != entries_.end(); ++it)
    if (&*it == h) { entries_.erase(it); break; }
  // Wake waiters that overlapped the released range and now conflict with
  // nothing ahead of them.
  std::vector<Handle*> ready;
  for (auto it = entries_.begin(); it != entries_.end(); ++it) {
    if (it->granted || !(it->begin < e && b < it->end)) continue;
    bool blocked = false;
    for (auto jt = entries_.begin(); jt != it; ++jt)
      if (jt->begin < it->end && it->begin < jt->end) { blocked = true; break; }
    if (!blocked) {
      it->granted = true;
      ready.push_back(&*it);
    }
  }
  for (Handle* r : ready) {
    Go g = std::move(r->go);
    g(r);
  }
}

}  // namespace flurry
