// Asio's recycling allocator must be configured the same way in every
// translation unit. asio/detail/config.hpp picks std::aligned_alloc/free
// when libstdc++'s _GLIBCXX_HAVE_ALIGNED_ALLOC is already defined, and
// operator new/delete otherwise, so a file that included an Asio header
// before any standard header got the other pair: a handler allocated by a
// post() from one file and freed by the event loop in another was
// malloc'ed and operator-deleted (AddressSanitizer: alloc-dealloc-mismatch).
// CMake now fixes the choice for all files (ghostd_asio's definitions); this
// file includes Asio first, as the files that got it wrong did.
#include <asio/io_context.hpp>
#include <asio/post.hpp>

#ifndef ASIO_HAS_STD_ALIGNED_ALLOC
#error "ASIO_HAS_STD_ALIGNED_ALLOC must come from the build, not from include order"
#endif

#include <doctest/doctest.h>

#include <array>
#include <atomic>
#include <thread>

TEST_CASE("asio: handlers posted from another thread are freed by the loop with the matching allocator") {
  // The path that failed: a thread outside the loop posts (allocating from
  // the heap: it has no recycling cache), the loop runs the handler and
  // recycles or frees the memory.
  asio::io_context io;
  auto guard = asio::make_work_guard(io);
  std::atomic<int> ran{0};
  std::thread poster([&] {
    for (int i = 0; i < 1000; ++i) asio::post(io, [&ran, pad = std::array<char, 96>{}] { ran += 1 + pad[0]; });
    asio::post(io, [&guard] { guard.reset(); });
  });
  io.run();
  poster.join();
  CHECK(ran == 1000);
}
