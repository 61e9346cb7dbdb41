// Logging setup: every component logs through spdlog to stderr, so stdout
// stays free for the LSP stream and CLI output.
#pragma once

#include <string_view>

namespace ghostd::runtime {

// Installs a stderr logger as spdlog's default. `level` is an spdlog level
// name (trace, debug, info, warn, error, off); unknown names mean info.
void setup_logging(std::string_view level);

}  // namespace ghostd::runtime
