#include "server/version.h"

namespace ghostd::server {

const char* version() { return "0.1.0"; }

}  // namespace ghostd::server
