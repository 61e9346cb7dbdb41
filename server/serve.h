// `ghostd [serve]`: the daemon on a real model. Answers `initialize` at once
// and loads the model in the background (the client's initializationOptions
// may name it; else --model; else the bundled model), then serves LSP over
// stdio or sockets with the engine on the CPU backend.
#pragma once

#include <filesystem>
#include <optional>
#include <span>

namespace ghostd::server {

// The bundled model's folder, looked up from the executable's folder
// upwards (an installed share/ghostd/models, or the source tree of a build
// folder): the first existing models/qwen2-code-small.
std::optional<std::filesystem::path> find_bundled_model(const std::filesystem::path& executable);

// argv excludes the program and the `serve` word. Returns the exit code.
int run_serve(std::span<char*> args, const char* argv0);

}  // namespace ghostd::server
