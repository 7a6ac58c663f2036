#pragma once
// Small objects that live long and come and go in bursts (client connections), allocated from
// slabs of their own, apart from the buffer blocks: after a burst, the pages the buffers free go
// back to the kernel whole instead of staying pinned between live connections (which is what
// made an idle keep-alive connection cost more than its own size). One free list per size
// class (64-byte steps up to 1 KiB) and thread; slabs are kept for reuse, so the memory is
// bounded by the most objects alive at once (max_connections bounds that), and freed when the
// thread ends: objects must be freed by the thread that made them, before it ends (a worker's
// connections are).
#include <cstddef>

namespace weir::slab {

void* allocate(size_t size);
void deallocate(void* p, size_t size);

}  // namespace weir::slab
