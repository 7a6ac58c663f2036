#pragma once
// Typed indices into a snapshot: a BackendId names a backend of one snapshot, a ServerId a
// server of one backend. They cannot be mixed up with each other or with plain integers; a
// default-constructed id is "none". The process-wide server number that survives reloads (pools,
// counters) is ServerRuntime::uid, a different thing.
#include <cstddef>
#include <cstdint>

namespace weir::model {

template <class Tag>
class Index {
 public:
  constexpr Index() = default;
  constexpr explicit Index(size_t i) : v_(static_cast<int32_t>(i)) {}
  // From a balancer's or router's int result, where -1 means none.
  static constexpr Index from_int(int i) {
    Index x;
    x.v_ = i;
    return x;
  }
  constexpr bool valid() const { return v_ >= 0; }
  constexpr size_t index() const { return static_cast<size_t>(v_); }
  constexpr int as_int() const { return v_; }
  friend constexpr bool operator==(Index a, Index b) = default;

 private:
  int32_t v_ = -1;
};

using BackendId = Index<struct BackendTag>;
using ServerId = Index<struct ServerTag>;

}  // namespace weir::model
