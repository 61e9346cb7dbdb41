// The extension's settings, validated, and their mapping onto the daemon's
// command line and initializationOptions (docs/configuration.md). No vscode
// import: unit tests run this under plain Node.

import * as path from 'node:path';

export interface GhostdSettings {
  path: string;
  args: string[];
  model: string;
  useDraft: boolean;
  maxTokens: number | undefined;
  deadlineMs: number | undefined;
  maxLines: number | undefined;
  enable: Record<string, boolean>;
  metricsLog: string;
  server: string; // '' = a local daemon; tls://HOST:PORT or tcp://127.0.0.1:PORT = a shared one
  caFile: string;
}

// Settings that the daemon reads only at startup: changing one restarts it.
export const kRestartKeys = ['path', 'args', 'model', 'metricsLog', 'server', 'caFile'] as const;

export const kDefaultEnable: Record<string, boolean> = { '*': true, plaintext: false, markdown: false, scminput: false };

function str(v: unknown): string {
  return typeof v === 'string' ? v.trim() : '';
}

// An integer in [lo, hi], else undefined: the daemon ignores the whole
// initializationOptions object when one key is out of range, so a bad value
// must not reach it.
function int(v: unknown, lo: number, hi: number): number | undefined {
  return typeof v === 'number' && Number.isInteger(v) && v >= lo && v <= hi ? v : undefined;
}

export function readSettings(get: (key: string) => unknown): GhostdSettings {
  const args = get('args');
  const enable = get('enable');
  const enableMap: Record<string, boolean> = {};
  if (enable && typeof enable === 'object' && !Array.isArray(enable)) {
    for (const [k, v] of Object.entries(enable as Record<string, unknown>)) {
      if (typeof v === 'boolean') enableMap[k] = v;
    }
  }
  return {
    path: str(get('path')),
    args: Array.isArray(args) ? args.filter((a): a is string => typeof a === 'string') : [],
    model: str(get('model')),
    useDraft: get('useDraft') !== false,
    maxTokens: int(get('maxTokens'), 1, 4096),
    deadlineMs: int(get('deadlineMs'), 1, 600000),
    maxLines: int(get('maxLines'), 1, 10000),
    enable: Object.keys(enableMap).length > 0 ? enableMap : { ...kDefaultEnable },
    metricsLog: str(get('metricsLog')),
    server: str(get('server')),
    caFile: str(get('caFile')),
  };
}

export interface ServerAddress {
  tls: boolean;
  host: string;
  port: number;
}

const kLoopback = new Set(['localhost', '127.0.0.1', '::1']);

// ghostd.server: tls://HOST:PORT, or tcp:// to a loopback address only (code
// would otherwise cross the network in clear text). Returns an error message
// for anything else.
export function parseServer(server: string): ServerAddress | string {
  const m = /^(tls|tcp):\/\/(\[[^\]]+\]|[^:/]+):(\d{1,5})$/.exec(server);
  if (!m) return `ghostd.server: expected tls://HOST:PORT or tcp://127.0.0.1:PORT, got '${server}'`;
  const host = m[2].startsWith('[') ? m[2].slice(1, -1) : m[2];
  const port = Number(m[3]);
  if (port < 1 || port > 65535) return `ghostd.server: port ${port} is out of range`;
  if (m[1] === 'tcp' && !kLoopback.has(host)) {
    return `ghostd.server: tcp://${host} is not loopback; use tls:// (the code you type would cross the network in clear text)`;
  }
  return { tls: m[1] === 'tls', host, port };
}

// Relative paths are taken from the workspace folder, like other tools' settings.
export function resolvePath(p: string, workspaceRoot: string | undefined): string {
  if (p === '' || path.isAbsolute(p) || workspaceRoot === undefined) return p;
  return path.join(workspaceRoot, p);
}

// Only the keys the user set: the daemon's own defaults (and flags) hold otherwise.
// With ghostd.server, `token` (from SecretStorage) authenticates the session
// and the model is a name the server offers, not a path.
export function initializationOptions(s: GhostdSettings, workspaceRoot?: string, token?: string): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  if (s.model) o.model = s.server ? s.model : resolvePath(s.model, workspaceRoot);
  if (s.server && token) o.token = token;
  if (!s.useDraft) o.useDraft = false;
  if (s.maxTokens !== undefined) o.maxTokens = s.maxTokens;
  if (s.deadlineMs !== undefined) o.deadlineMs = s.deadlineMs;
  if (s.maxLines !== undefined) o.maxLines = s.maxLines;
  // Unknown to the daemon (it ignores unknown keys); the extension filters by
  // language itself, and passing it keeps the daemon's logs complete.
  o.enable = { ...s.enable };
  return o;
}

export interface ServerCommand {
  command: string;
  args: string[];
}

// `ghostd serve` over stdio. The metrics log is a flag only (the daemon does
// not open one from initializationOptions), so it goes on the command line.
export function serverCommand(s: GhostdSettings, metricsLog: string, workspaceRoot?: string): ServerCommand {
  const args = ['serve'];
  if (metricsLog) args.push('--metrics-log', metricsLog);
  args.push(...s.args);
  return { command: s.path ? resolvePath(s.path, workspaceRoot) : 'ghostd', args };
}

// The language's own entry wins over "*"; unknown languages default to on.
export function languageEnabled(enable: Record<string, boolean>, languageId: string): boolean {
  if (languageId in enable) return enable[languageId];
  if ('*' in enable) return enable['*'];
  return true;
}
