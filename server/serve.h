// `ghostd [serve]`: the daemon on a real model. Answers `initialize` at once
// and loads the model in the background (the client's initializationOptions
// may name it; else --model; else the bundled model), then serves LSP over
// stdio or sockets with the engine on the CPU backend.
#pragma once

#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "runtime/core/result.h"
#include "server/options.h"

namespace ghostd::server {

// The bundled model's folder, looked up from the executable's folder
// upwards (an installed share/ghostd/models, or the source tree of a build
// folder): the first existing models/qwen2-code-small.
std::optional<std::filesystem::path> find_bundled_model(const std::filesystem::path& executable);

// The devices of replica `index` of `count`'s ranks, from --devices,
// --tensor-parallel and --device: a list of N entries is shared by every
// replica, a list of count x N gives replica i the i-th N; other counts are
// an error naming both.
runtime::Result<std::vector<std::string>> replica_devices(const ServerOptions& options, int index, int count);

// argv excludes the program and the `serve` word. Returns the exit code.
int run_serve(std::span<char*> args, const char* argv0);

}  // namespace ghostd::server
