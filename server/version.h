#pragma once

namespace ghostd::server {

// The daemon's version, reported in `initialize` (serverInfo) and --version.
const char* version();

}  // namespace ghostd::server
