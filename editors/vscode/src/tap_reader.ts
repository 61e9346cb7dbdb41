// A MessageReader that shows every incoming message to an observer before
// the client sees it. Lets the extension follow $/progress for the model-load
// token while vscode-languageclient keeps the token's only handler (its own
// progress notification).

import type { DataCallback, Disposable, Event, Message, MessageReader, PartialMessageInfo } from 'vscode-languageclient';

export class TapReader implements MessageReader {
  constructor(
    private readonly inner: MessageReader,
    private readonly observe: (msg: Message) => void,
  ) {}

  get onError(): Event<Error> {
    return this.inner.onError;
  }

  get onClose(): Event<void> {
    return this.inner.onClose;
  }

  get onPartialMessage(): Event<PartialMessageInfo> {
    return this.inner.onPartialMessage;
  }

  listen(callback: DataCallback): Disposable {
    return this.inner.listen((msg) => {
      try {
        this.observe(msg);
      } catch {
        // The status bar must never break the connection.
      }
      callback(msg);
    });
  }

  dispose(): void {
    this.inner.dispose();
  }
}
