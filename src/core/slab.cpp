#include "core/slab.hpp"

#include <cstdlib>
#include <new>
#include <vector>

namespace weir::slab {
namespace {

constexpr size_t kStep = 64;
constexpr size_t kClasses = 16;  // up to 1 KiB; larger objects use the ordinary heap
constexpr size_t kSlabBytes = 64 * 1024;

struct FreeNode {
  FreeNode* next;
};

struct Lists {
  FreeNode* free[kClasses] = {};
  std::vector<char*> slabs;  // freed when the thread ends (its objects are gone by then)
  ~Lists() {
    for (char* s : slabs)
      std::free(s);
  }
};

thread_local Lists lists;

size_t class_of(size_t size) {
  return (size + kStep - 1) / kStep - 1;
}

}  // namespace

void* allocate(size_t size) {
  size_t c = class_of(size);
  if (size == 0 || c >= kClasses) return ::operator new(size);
  FreeNode*& head = lists.free[c];
  if (!head) {
    // A new slab, carved into objects of this class.
    size_t object = (c + 1) * kStep;
    char* slab = static_cast<char*>(std::malloc(kSlabBytes));
    if (!slab) throw std::bad_alloc();
    lists.slabs.push_back(slab);
    for (size_t off = 0; off + object <= kSlabBytes; off += object) {
      auto* n = reinterpret_cast<FreeNode*>(slab + off);
      n->next = head;
      head = n;
    }
  }
  FreeNode* n = head;
  head = n->next;
  return n;
}

void deallocate(void* p, size_t size) {
  if (!p) return;
  size_t c = class_of(size);
  if (size == 0 || c >= kClasses) {
    ::operator delete(p);
    return;
  }
  auto* n = static_cast<FreeNode*>(p);
  n->next = lists.free[c];
  lists.free[c] = n;
}

}  // namespace weir::slab
