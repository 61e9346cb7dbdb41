// Ending the daemon's process after the LSP shutdown/exit handshake. No
// vscode import, so it is unit-tested.

import type { ChildProcess } from 'node:child_process';

export function hasExited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

// Gives a daemon that was told to exit up to graceMs to finish on its own
// (after `exit` it still drains its replies and writes the metrics log's last
// summary), then kills it. Resolves true when it ended by itself, false when
// it was killed.
export async function endProcess(child: ChildProcess, graceMs: number): Promise<boolean> {
  // Never started (spawn failed): there is nothing to wait for.
  if (hasExited(child) || child.pid === undefined) return true;
  const exited = await new Promise<boolean>((resolve) => {
    const onExit = () => {
      clearTimeout(timer);
      resolve(true);
    };
    const timer = setTimeout(() => {
      child.off('exit', onExit);
      resolve(hasExited(child));
    }, graceMs);
    child.once('exit', onExit);
  });
  if (!exited) child.kill();
  return exited;
}
