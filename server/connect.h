// `ghostd connect tls://HOST:PORT | tcp://HOST:PORT`: a stdio language
// server for editors that can only spawn one, bridged to a shared daemon.
#pragma once

#include <span>

namespace ghostd::server {

// argv excludes the program and the `connect` word. Returns the exit code.
int run_connect(std::span<char*> args);

}  // namespace ghostd::server
