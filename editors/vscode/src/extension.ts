// The ghostd VS Code extension: starts the daemon over stdio, lets
// vscode-languageclient (>= 10, LSP 3.18 inline completions registered by
// default) show its completions as ghost text, and keeps a status-bar item
// with the model's state and the last completion's latency.

import * as cp from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import * as tls from 'node:tls';
import * as vscode from 'vscode';
import {
  CloseAction,
  DidChangeConfigurationNotification,
  ErrorAction,
  ErrorHandler,
  LanguageClient,
  LanguageClientOptions,
  MessageTransports,
  State,
  StreamMessageReader,
  StreamMessageWriter,
} from 'vscode-languageclient/node';
import { endProcess } from './process';
import {
  GhostdSettings,
  initializationOptions,
  kRestartKeys,
  languageEnabled,
  parseServer,
  readSettings,
  resolvePath,
  serverCommand,
} from './settings';
import { StatusModel, unauthorizedMessage } from './status';
import { TapReader } from './tap_reader';

const kTokenSecret = 'ghostd.serverToken';

const kEnabledKey = 'ghostd.enabled';
// The daemon sends window/workDoneProgress/create right after `initialized`
// when the model is still loading; without it within this time the model was
// already there.
const kProgressGraceMs = 1500;
// After shutdown/exit the daemon drains its replies and closes its metrics
// log; it is killed only if it is still there after this time.
const kExitGraceMs = 2000;

class GhostdExtension implements vscode.Disposable {
  private client: LanguageClient | undefined;
  private child: cp.ChildProcess | undefined;
  private readonly status = new StatusModel();
  private readonly item: vscode.StatusBarItem;
  private readonly output: vscode.LogOutputChannel;
  private settings: GhostdSettings;
  private sawProgress = false;
  private token: string | undefined; // ghostd.server's token, from SecretStorage
  // The server's refusal of this connection's token, seen on the wire: the
  // server closes the connection right after its answer, and the library may
  // dispose of the connection before it reads the answer ("Pending response
  // rejected since connection got disposed"), so the message is kept here.
  private refused: string | undefined;
  private readonly disposables: vscode.Disposable[] = [];

  constructor(private readonly context: vscode.ExtensionContext) {
    this.output = vscode.window.createOutputChannel('ghostd', { log: true });
    this.item = vscode.window.createStatusBarItem('ghostd.status', vscode.StatusBarAlignment.Right, 100);
    this.item.name = 'ghostd';
    this.item.command = 'ghostd.showMenu';
    this.settings = this.readSettings();
    this.status.enabled = context.globalState.get<boolean>(kEnabledKey, true);
    this.render();
    this.item.show();
    this.disposables.push(
      this.output,
      this.item,
      vscode.commands.registerCommand('ghostd.restartServer', () => this.restart()),
      vscode.commands.registerCommand('ghostd.toggleCompletions', () => this.toggle()),
      vscode.commands.registerCommand('ghostd.openMetricsLog', () => this.openMetricsLog()),
      vscode.commands.registerCommand('ghostd.setToken', () => this.setToken()),
      vscode.commands.registerCommand('ghostd.showMenu', () => this.showMenu()),
      vscode.workspace.onDidChangeConfiguration((e) => this.onConfigurationChanged(e)),
    );
  }

  private readSettings(): GhostdSettings {
    const cfg = vscode.workspace.getConfiguration('ghostd');
    return readSettings((key) => cfg.get(key));
  }

  private workspaceRoot(): string | undefined {
    return vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
  }

  metricsLogPath(): string {
    if (this.settings.metricsLog) return this.settings.metricsLog;
    return path.join(this.context.logUri.fsPath, 'metrics.jsonl');
  }

  private render(): void {
    const v = this.status.view();
    this.item.text = v.text;
    this.item.tooltip = v.tooltip;
    this.item.backgroundColor =
      v.severity === 'error'
        ? new vscode.ThemeColor('statusBarItem.errorBackground')
        : v.severity === 'warning'
          ? new vscode.ThemeColor('statusBarItem.warningBackground')
          : undefined;
  }

  // Spawns the daemon; the reader is tapped to follow its progress and errors.
  private async transports(): Promise<MessageTransports> {
    if (this.settings.server) return this.remoteTransports();
    const root = this.workspaceRoot();
    const metricsLog = this.metricsLogPath();
    fs.mkdirSync(path.dirname(metricsLog), { recursive: true });
    const cmd = serverCommand(this.settings, metricsLog, root);
    this.output.info(`starting ${cmd.command} ${cmd.args.join(' ')}`);
    const child = cp.spawn(cmd.command, cmd.args, { cwd: root, stdio: ['pipe', 'pipe', 'pipe'] });
    this.child = child;
    this.sawProgress = false;
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', () => resolve());
      child.once('error', (err: NodeJS.ErrnoException) => {
        const why =
          err.code === 'ENOENT'
            ? `cannot find '${cmd.command}': install ghostd on PATH or set ghostd.path`
            : `cannot start '${cmd.command}': ${err.message}`;
        reject(new Error(why));
      });
    });
    child.on('error', (err) => this.output.error(`ghostd: ${err.message}`));
    child.stderr?.on('data', (d: Buffer) => this.output.append(d.toString()));
    child.on('exit', (code, signal) => {
      this.output.info(`ghostd exited (${signal ?? code})`);
      if (this.child === child) this.child = undefined;
    });
    const reader = new TapReader(new StreamMessageReader(child.stdout!), (msg) => {
      const m = msg as { method?: string };
      if (m.method === '$/progress') this.sawProgress = true;
      this.apply(msg);
    });
    return { reader, writer: new StreamMessageWriter(child.stdin!), detached: false };
  }

  // ghostd.server: a TLS (or loopback TCP) connection to a shared daemon.
  // The client's own restart logic reconnects when the server goes away.
  private async remoteTransports(): Promise<MessageTransports> {
    const addr = parseServer(this.settings.server);
    if (typeof addr === 'string') throw new Error(addr);
    this.token = await this.context.secrets.get(kTokenSecret);
    if (!this.token) this.output.warn('ghostd.server is set but no token is stored: run "ghostd: Set Server Token"');
    const ca = this.settings.caFile ? fs.readFileSync(resolvePath(this.settings.caFile, this.workspaceRoot())) : undefined;
    this.output.info(`connecting to ${this.settings.server}`);
    this.sawProgress = false;
    this.refused = undefined;
    const socket = await new Promise<net.Socket>((resolve, reject) => {
      const s: net.Socket = addr.tls
        ? tls.connect({ host: addr.host, port: addr.port, servername: net.isIP(addr.host) ? undefined : addr.host, ca,
                        minVersion: 'TLSv1.2' }, () => resolve(s))
        : net.connect({ host: addr.host, port: addr.port }, () => resolve(s));
      s.once('error', (err) => reject(new Error(`cannot connect to ${this.settings.server}: ${err.message}`)));
    });
    socket.on('error', (err) => this.output.error(`ghostd: ${err.message}`));
    socket.setNoDelay(true);
    const reader = new TapReader(new StreamMessageReader(socket), (msg) => {
      const m = msg as { method?: string };
      if (m.method === '$/progress') this.sawProgress = true;
      const refusal = unauthorizedMessage(msg);
      if (refusal !== undefined && this.refused === undefined) {
        this.refused = refusal;
        this.status.apply({ kind: 'error', message: refusal });
        this.render();
      }
      this.apply(msg);
    });
    return { reader, writer: new StreamMessageWriter(socket), detached: false };
  }

  async setToken(): Promise<void> {
    const token = await vscode.window.showInputBox({
      prompt: 'Token for the ghostd server (kept in VS Code\'s secret storage)',
      password: true,
      ignoreFocusOut: true,
    });
    if (token === undefined) return;
    if (token.trim() === '') await this.context.secrets.delete(kTokenSecret);
    else await this.context.secrets.store(kTokenSecret, token.trim());
    if (this.settings.server) await vscode.commands.executeCommand('ghostd.restartServer');
  }

  private apply(msg: unknown): void {
    const before = this.status.phase;
    this.status.applyMessage(msg);
    if (before !== this.status.phase || this.status.phase === 'loading') this.render();
  }

  async start(): Promise<void> {
    this.status.apply({ kind: 'starting' });
    this.render();
    const clientOptions: LanguageClientOptions = {
      documentSelector: [{ scheme: 'file' }, { scheme: 'untitled' }],
      outputChannel: this.output,
      initializationOptions: () => initializationOptions(this.settings, this.workspaceRoot(), this.token),
      middleware: {
        provideInlineCompletionItems: async (document, position, context, token, next) => {
          if (!this.status.enabled || !languageEnabled(this.settings.enable, document.languageId)) return undefined;
          const t0 = performance.now();
          const result = await next(document, position, context, token);
          if (!token.isCancellationRequested) {
            const items = Array.isArray(result) ? result.length : (result?.items.length ?? 0);
            this.status.apply({ kind: 'completion', latencyMs: performance.now() - t0, items });
            this.render();
          }
          return result;
        },
        // Ghost text only: completion-list items from a model would crowd the
        // suggest widget on every space.
        provideCompletionItem: () => undefined,
      },
      // Not retried. In place of the library's own notification, which shows
      // the disposed connection's error when it lost the server's refusal.
      initializationFailedHandler: (error) => {
        const message = this.refused ?? (error instanceof Error ? error.message : String(error));
        this.output.error(`initialize failed: ${message}`);
        void vscode.window.showErrorMessage(`ghostd: ${message}`);
        return false;
      },
    };
    // The library restarts a client whose connection closes; one that was
    // stopped or replaced meanwhile (a restart while it was still starting)
    // must stay down, or it spawns a daemon that nothing ever stops. So must
    // one whose token the server refused: the server closes the connection
    // after its answer, and each reconnection (five, then the library gives
    // up with "crashed 5 times") would be refused again, hiding the refusal
    // behind a "stopped" status.
    let defaults: ErrorHandler | undefined;
    const current = () => this.client === client;
    const handler = () => (defaults ??= client.createDefaultErrorHandler());
    clientOptions.errorHandler = {
      error: (error, message, count) =>
        current() ? handler().error(error, message, count) : { action: ErrorAction.Shutdown, handled: true },
      closed: () =>
        current() && this.refused === undefined ? handler().closed() : { action: CloseAction.DoNotRestart, handled: true },
    };
    const client = new LanguageClient('ghostd', 'ghostd', () => this.transports(), clientOptions);
    this.client = client;
    // Also follows the client's own restarts of a daemon that crashed.
    client.onDidChangeState((e) => {
      if (this.client !== client) return;
      if (e.newState === State.Starting) this.status.apply({ kind: 'starting' });
      if (e.newState === State.Stopped) this.status.apply({ kind: 'stopped' });
      if (e.newState === State.Running) {
        setTimeout(() => {
          if (this.client === client && !this.sawProgress) {
            this.status.apply({ kind: 'initialized' });
            this.render();
          }
        }, kProgressGraceMs);
      }
      this.render();
    });
    try {
      await client.start();
    } catch (err) {
      if (this.client !== client) return;  // stopped by a restart before it was up
      const message = this.refused ?? (err instanceof Error ? err.message : String(err));
      this.status.apply({ kind: 'error', message });
      this.render();
      // vscode-languageclient (or initializationFailedHandler) has already shown it in a notification.
      this.output.error(message);
    }
  }

  async stop(): Promise<void> {
    const client = this.client;
    const child = this.child;
    this.client = undefined;
    let answered = false;
    if (client) {
      try {
        await client.stop(3000);
        answered = true;
      } catch (err) {
        this.output.warn(`stopping ghostd: ${String(err)}`);
      }
    }
    // shutdown/exit ends the daemon, which still needs a moment after `exit`
    // (killing it at once cut off its metrics log's last summary); a daemon
    // that did not answer, or does not end, is killed.
    if (child && !(await endProcess(child, answered ? kExitGraceMs : 0))) {
      this.output.warn(`ghostd did not exit${answered ? ` within ${kExitGraceMs} ms of shutdown/exit` : ''}: killed`);
    }
  }

  async restart(): Promise<void> {
    this.output.info('restarting ghostd');
    this.settings = this.readSettings();
    await this.stop();
    await this.start();
  }

  private async toggle(): Promise<void> {
    this.status.enabled = !this.status.enabled;
    await this.context.globalState.update(kEnabledKey, this.status.enabled);
    this.render();
    void vscode.window.setStatusBarMessage(`ghostd: completions ${this.status.enabled ? 'on' : 'off'}`, 2000);
  }

  private async openMetricsLog(): Promise<void> {
    const file = this.metricsLogPath();
    if (!fs.existsSync(file)) {
      void vscode.window.showInformationMessage(`ghostd: no metrics yet (${file} is written after the first completion)`);
      return;
    }
    const doc = await vscode.workspace.openTextDocument(vscode.Uri.file(file));
    await vscode.window.showTextDocument(doc, { preview: true });
  }

  private async showMenu(): Promise<void> {
    const picks: (vscode.QuickPickItem & { command: string })[] = [
      { label: this.status.enabled ? 'Turn completions off' : 'Turn completions on', command: 'ghostd.toggleCompletions' },
      { label: 'Restart the server', command: 'ghostd.restartServer' },
      { label: 'Open the metrics log', command: 'ghostd.openMetricsLog' },
      { label: 'Show the log', command: 'ghostd.showLog' },
    ];
    const pick = await vscode.window.showQuickPick(picks, { title: this.status.view().tooltip.split('\n')[0] });
    if (!pick) return;
    if (pick.command === 'ghostd.showLog') this.output.show();
    else await vscode.commands.executeCommand(pick.command);
  }

  private async onConfigurationChanged(e: vscode.ConfigurationChangeEvent): Promise<void> {
    if (!e.affectsConfiguration('ghostd')) return;
    const before = this.settings;
    this.settings = this.readSettings();
    if (kRestartKeys.some((k) => JSON.stringify(before[k]) !== JSON.stringify(this.settings[k]))) {
      await this.restart();
      return;
    }
    if (this.client?.isRunning()) {
      await this.client.sendNotification(DidChangeConfigurationNotification.type, {
        settings: { ghostd: initializationOptions(this.settings, this.workspaceRoot()) },
      });
    }
  }

  async dispose(): Promise<void> {
    await this.stop();
    for (const d of this.disposables) d.dispose();
  }
}

let extension: GhostdExtension | undefined;

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  extension = new GhostdExtension(context);
  context.subscriptions.push({ dispose: () => void extension?.dispose() });
  await extension.start();
}

export async function deactivate(): Promise<void> {
  const e = extension;
  extension = undefined;
  await e?.dispose();
}
