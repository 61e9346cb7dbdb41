// What the status-bar item shows: the model's state (from the daemon's
// $/progress and window/logMessage traffic) and the last completion's
// latency. Plain state machine, no vscode import, so it is unit-tested.

export const kProgressToken = 'ghostd/model-load';

export type StatusEvent =
  | { kind: 'starting' }
  | { kind: 'progress-begin'; percentage?: number; message?: string }
  | { kind: 'progress-report'; percentage?: number; message?: string }
  | { kind: 'progress-end'; message?: string }
  | { kind: 'error'; message: string }
  | { kind: 'initialized' } // no progress followed: the model was already loaded
  | { kind: 'stopped'; message?: string }
  | { kind: 'completion'; latencyMs: number; items: number };

export type Phase = 'starting' | 'loading' | 'ready' | 'error' | 'stopped';

export interface StatusView {
  text: string;
  tooltip: string;
  severity: 'normal' | 'warning' | 'error';
}

export class StatusModel {
  phase: Phase = 'starting';
  percentage: number | undefined;
  message = '';
  lastLatencyMs: number | undefined;
  lastItems = 0;
  completions = 0;
  enabled = true;

  apply(e: StatusEvent): void {
    switch (e.kind) {
      case 'starting':
        this.phase = 'starting';
        this.percentage = undefined;
        this.message = '';
        break;
      case 'progress-begin':
      case 'progress-report':
        if (this.phase === 'error') break;
        this.phase = 'loading';
        if (e.percentage !== undefined) this.percentage = e.percentage;
        if (e.message) this.message = e.message;
        break;
      case 'progress-end':
        // A failed load ends the progress too; its logMessage error has the say.
        if (this.phase === 'error') break;
        this.phase = 'ready';
        this.percentage = undefined;
        this.message = e.message ?? '';
        break;
      case 'initialized':
        if (this.phase === 'starting') this.phase = 'ready';
        break;
      case 'error':
        this.phase = 'error';
        this.message = e.message;
        break;
      case 'stopped':
        if (this.phase !== 'error') {
          this.phase = 'stopped';
          this.message = e.message ?? '';
        }
        break;
      case 'completion':
        this.lastLatencyMs = e.latencyMs;
        this.lastItems = e.items;
        this.completions += 1;
        // A completion with text proves the model is up even if the progress was missed.
        if (e.items > 0 && (this.phase === 'starting' || this.phase === 'loading')) this.phase = 'ready';
        break;
    }
  }

  // Follows one message from the daemon; returns whether it changed anything.
  applyMessage(msg: unknown): boolean {
    const e = classifyServerMessage(msg);
    if (e) this.apply(e);
    return e !== undefined;
  }

  view(): StatusView {
    const latency = this.lastLatencyMs === undefined ? '' : ` ${Math.round(this.lastLatencyMs)} ms`;
    const tail = this.enabled ? '' : '\nCompletions are off (ghostd: Toggle Completions).';
    switch (this.phase) {
      case 'starting':
        return { text: '$(loading~spin) ghostd', tooltip: 'ghostd: starting the daemon' + tail, severity: 'normal' };
      case 'loading': {
        const pct = this.percentage === undefined ? '' : ` ${this.percentage}%`;
        const msg = this.message ? `: ${this.message}` : '';
        return { text: `$(loading~spin) ghostd${pct}`, tooltip: `ghostd: loading the model${pct}${msg}` + tail, severity: 'normal' };
      }
      case 'ready': {
        const icon = this.enabled ? '$(sparkle)' : '$(circle-slash)';
        const last =
          this.lastLatencyMs === undefined
            ? 'no completion yet'
            : `last completion ${Math.round(this.lastLatencyMs)} ms, ${this.lastItems} item(s); ${this.completions} in all`;
        return { text: `${icon} ghostd${this.enabled ? latency : ' off'}`, tooltip: `ghostd: model ready, ${last}` + tail, severity: 'normal' };
      }
      case 'error':
        return { text: '$(error) ghostd', tooltip: `ghostd: ${this.message || 'error'}\nClick to restart.`, severity: 'error' };
      case 'stopped':
        return {
          text: '$(debug-disconnect) ghostd',
          tooltip: `ghostd: the daemon stopped${this.message ? `: ${this.message}` : ''}\nClick to restart.`,
          severity: 'warning',
        };
    }
  }
}

interface RpcMessage {
  method?: unknown;
  params?: unknown;
  error?: unknown;
}

// The daemon's answer to a session without a valid token (docs/configuration.md,
// --token-file); it closes the connection right after.
export const kUnauthorized = -32001;

// The message of a reply that refuses the session's token, else undefined.
export function unauthorizedMessage(msg: unknown): string | undefined {
  if (!msg || typeof msg !== 'object') return undefined;
  const e = (msg as RpcMessage).error as { code?: unknown; message?: unknown } | undefined;
  if (!e || typeof e !== 'object' || e.code !== kUnauthorized) return undefined;
  return typeof e.message === 'string' ? e.message : 'authentication failed';
}

// Maps one message from the daemon to a status event, or undefined. Reads
// the raw stream so that vscode-languageclient's own progress UI (which owns
// the token's handler) keeps working alongside.
export function classifyServerMessage(msg: unknown): StatusEvent | undefined {
  if (!msg || typeof msg !== 'object') return undefined;
  const m = msg as RpcMessage;
  const params = (m.params ?? {}) as Record<string, unknown>;
  if (m.method === '$/progress' && params.token === kProgressToken) {
    const v = (params.value ?? {}) as Record<string, unknown>;
    const percentage = typeof v.percentage === 'number' ? v.percentage : undefined;
    const message = typeof v.message === 'string' ? v.message : undefined;
    if (v.kind === 'begin') return { kind: 'progress-begin', percentage, message };
    if (v.kind === 'report') return { kind: 'progress-report', percentage, message };
    if (v.kind === 'end') return { kind: 'progress-end', message };
    return undefined;
  }
  if (m.method === 'window/logMessage' || m.method === 'window/showMessage') {
    // Only errors change the state (warnings, e.g. about ignored options, do not).
    if (params.type === 1 && typeof params.message === 'string') return { kind: 'error', message: params.message };
  }
  return undefined;
}
