// SPDX-License-Identifier: Apache-2.0
#include "epochs/range_lock.h"

#include <gtest/gtest.h>

#include <vector>

namespace flurry {
namespace {

TEST(RangeLock, OverlapsWaitInArrivalOrderDisjointProceed) {
  RangeLock l;
  std::vector<int> order;
  std::vector<RangeLock::Handle*> h(5, nullptr);
  l.Acquire(0, 100, [&](RangeLock::Handle* x) { order.push_back(0); h[0] = x; });
  l.Acquire(50, 100, [&](RangeLock::Handle* x) { order.push_back(1); h[1] = x; });   // waits for 0
  l.Acquire(200, 10, [&](RangeLock::Handle* x) { order.push_back(2); h[2] = x; });   // free
  l.Acquire(120, 10, [&](RangeLock::Handle* x) { order.push_back(3); h[3] = x; });   // waits for 1
  l.Acquire(99, 1, [&](RangeLock::Handle* x) { order.push_back(4); h[4] = x; });     // waits for 0 and 1
  EXPECT_EQ(order, (std::vector<int>{0, 2}));
  l.Release(h[0]);
  EXPECT_EQ(order, (std::vector<int>{0, 2, 1}));
  l.Release(h[1]);
  EXPECT_EQ(order, (std::vector<int>{0, 2, 1, 3, 4}));
  l.Release(h[2]);
  l.Release(h[3]);
  l.Release(h[4]);
  EXPECT_EQ(l.held(), 0u);
}

}  // namespace
}  // namespace flurry
