// A headless Debian chromium driven over the Chrome DevTools Protocol, for browser tests: launch,
// open a page at a given viewport, navigate, evaluate expressions, type and press real keys,
// screenshot, close. Written against the protocol directly (Bun's WebSocket), not puppeteer-core:
// the worktrees of this project share one node_modules, and the few commands needed here are
// a page of code. Always cleaned up: close() from afterAll, and a process "exit" hook that kills
// what is left and removes the profile directory.
//
// chromium is Debian's package (scripts/install-deps.sh); CHROMIUM_BIN overrides the path.

import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";

export const chromiumBin = process.env.CHROMIUM_BIN ?? "/usr/bin/chromium";
/** How long launch() waits for chromium to print its DevTools endpoint. */
const launchTimeoutMs = 30_000;
/** How long one protocol command may take before it fails the test with its name. */
const commandTimeoutMs = 30_000;
/** Lines of chromium's stderr kept for failure messages. */
const logLinesMax = 200;

export function chromiumAvailable(): boolean {
  return existsSync(chromiumBin);
}

interface Pending {
  resolve: (result: Record<string, unknown>) => void;
  reject: (error: Error) => void;
  method: string;
  timer: ReturnType<typeof setTimeout>;
}

const live = new Set<Chromium>();
let exitHookInstalled = false;

export class Chromium {
  readonly #proc: Subprocess<"ignore", "ignore", "pipe">;
  readonly #profileDir: string;
  readonly #socket: WebSocket;
  readonly #pending = new Map<number, Pending>();
  readonly log: string[];
  #nextId = 1;
  #closed = false;

  private constructor(
    proc: Subprocess<"ignore", "ignore", "pipe">,
    profileDir: string,
    socket: WebSocket,
    log: string[],
  ) {
    this.#proc = proc;
    this.#profileDir = profileDir;
    this.#socket = socket;
    this.log = log;
    socket.addEventListener("message", (event) => this.#onMessage(String(event.data)));
    socket.addEventListener("close", () => this.#failAll(new Error("the DevTools connection closed")));
  }

  static async launch(): Promise<Chromium> {
    if (!exitHookInstalled) {
      exitHookInstalled = true;
      process.on("exit", () => {
        for (const browser of live) browser.#killSync();
      });
    }
    const profileDir = mkdtempSync(join(tmpdir(), "hermes-kv-chromium-"));
    const proc = Bun.spawn(
      [
        chromiumBin,
        "--headless",
        // Root in a container has no user namespace sandbox; the page is our own, served locally.
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--remote-debugging-port=0",
        `--user-data-dir=${profileDir}`,
        "about:blank",
      ],
      { stdin: "ignore", stdout: "ignore", stderr: "pipe" },
    );
    const log: string[] = [];
    const endpoint = await readEndpoint(proc, log).catch((error: Error) => {
      proc.kill("SIGKILL");
      rmSync(profileDir, { recursive: true, force: true });
      throw new Error(`chromium did not start: ${error.message}\n${log.join("\n")}`);
    });
    const socket = new WebSocket(endpoint);
    await new Promise<void>((resolve, reject) => {
      socket.addEventListener("open", () => resolve(), { once: true });
      socket.addEventListener("error", () => reject(new Error(`cannot connect to ${endpoint}`)), { once: true });
    });
    const browser = new Chromium(proc, profileDir, socket, log);
    live.add(browser);
    return browser;
  }

  /** One protocol command (on a page's session when `sessionId` is given); rejects on a protocol error. */
  send(method: string, params: Record<string, unknown> = {}, sessionId?: string): Promise<Record<string, unknown>> {
    if (this.#closed) return Promise.reject(new Error(`${method}: the browser is closed`));
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error(`${method}: no answer within ${commandTimeoutMs} ms`));
      }, commandTimeoutMs);
      this.#pending.set(id, { resolve, reject, method, timer });
      this.#socket.send(
        JSON.stringify(sessionId === undefined ? { id, method, params } : { id, method, params, sessionId }),
      );
    });
  }

  /** A new tab of `width` x `height` CSS pixels. */
  async newPage(width: number, height: number): Promise<Page> {
    const { targetId } = (await this.send("Target.createTarget", { url: "about:blank" })) as { targetId: string };
    const { sessionId } = (await this.send("Target.attachToTarget", { targetId, flatten: true })) as {
      sessionId: string;
    };
    const page = new Page(this, sessionId);
    await page.setViewport(width, height);
    await this.send("Runtime.enable", {}, sessionId);
    await this.send("Page.enable", {}, sessionId);
    return page;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    live.delete(this);
    this.#socket.close();
    this.#proc.kill("SIGKILL");
    await this.#proc.exited;
    rmSync(this.#profileDir, { recursive: true, force: true });
  }

  #killSync(): void {
    this.#proc.kill("SIGKILL");
    rmSync(this.#profileDir, { recursive: true, force: true });
  }

  #onMessage(text: string): void {
    const message = JSON.parse(text) as { id?: number; result?: Record<string, unknown>; error?: { message: string } };
    if (message.id === undefined) return; // an event: this driver polls instead of subscribing
    const pending = this.#pending.get(message.id);
    if (pending === undefined) return;
    this.#pending.delete(message.id);
    clearTimeout(pending.timer);
    if (message.error !== undefined) pending.reject(new Error(`${pending.method}: ${message.error.message}`));
    else pending.resolve(message.result ?? {});
  }

  #failAll(error: Error): void {
    for (const pending of this.#pending.values()) {
      clearTimeout(pending.timer);
      pending.reject(error);
    }
    this.#pending.clear();
  }
}

/** Reads chromium's stderr until it prints "DevTools listening on ws://…"; keeps the lines in `log`. */
async function readEndpoint(proc: Subprocess<"ignore", "ignore", "pipe">, log: string[]): Promise<string> {
  const reader = proc.stderr.getReader();
  const decoder = new TextDecoder();
  let buffered = "";
  const deadline = setTimeout(() => void reader.cancel(), launchTimeoutMs);
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) throw new Error("chromium exited or timed out before printing its DevTools endpoint");
      buffered += decoder.decode(value, { stream: true });
      const lines = buffered.split("\n");
      buffered = lines.pop()!;
      for (const line of lines) {
        if (log.length < logLinesMax) log.push(line);
        const match = /DevTools listening on (ws:\/\/\S+)/.exec(line);
        if (match !== null) {
          // Keep draining stderr so that chromium never blocks on a full pipe.
          void (async () => {
            for (;;) {
              const next = await reader.read().catch(() => ({ done: true, value: undefined }));
              if (next.done === true) return;
              if (log.length < logLinesMax) log.push(decoder.decode(next.value));
            }
          })();
          return match[1]!;
        }
      }
    }
  } finally {
    clearTimeout(deadline);
  }
}

export class Page {
  readonly #browser: Chromium;
  readonly #sessionId: string;

  constructor(browser: Chromium, sessionId: string) {
    this.#browser = browser;
    this.#sessionId = sessionId;
  }

  #send(method: string, params: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
    return this.#browser.send(method, params, this.#sessionId);
  }

  async setViewport(width: number, height: number): Promise<void> {
    await this.#send("Emulation.setDeviceMetricsOverride", { width, height, deviceScaleFactor: 1, mobile: false });
    // Overlay scrollbars, as on a phone: the page lays out in all of `width`.
    await this.#send("Emulation.setScrollbarsHidden", { hidden: true });
  }

  /** Navigates and waits until the document has loaded. */
  async goto(url: string): Promise<void> {
    const result = (await this.#send("Page.navigate", { url })) as { errorText?: string };
    if (result.errorText !== undefined) throw new Error(`navigate to ${url}: ${result.errorText}`);
    await this.waitFor(`document.readyState === "complete" && location.href === ${JSON.stringify(url)}`, 30_000);
  }

  /** The value of a JavaScript expression in the page (awaited if it is a promise), as JSON. */
  async evaluate<T>(expression: string): Promise<T> {
    const { result, exceptionDetails } = (await this.#send("Runtime.evaluate", {
      expression,
      awaitPromise: true,
      returnByValue: true,
    })) as { result: { value?: unknown }; exceptionDetails?: { text: string; exception?: { description?: string } } };
    if (exceptionDetails !== undefined) {
      throw new Error(
        `evaluate ${expression.slice(0, 200)}: ${exceptionDetails.exception?.description ?? exceptionDetails.text}`,
      );
    }
    return result.value as T;
  }

  /**
   * Polls `expression` until it is truthy; returns its value. Throws with `describe`'s value (an
   * expression that says what the page shows) when `timeoutMs` passes: a bound on a test that
   * would otherwise hang, not a timing assertion.
   */
  async waitFor<T>(expression: string, timeoutMs = 20_000, describe = "document.body?.innerText ?? ''"): Promise<T> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const value = await this.evaluate<T>(expression).catch(() => null);
      if (value) return value;
      if (performance.now() > deadline) {
        const shown = await this.evaluate<unknown>(describe).catch((error: Error) => error.message);
        throw new Error(`waited ${timeoutMs} ms for ${expression}; the page shows: ${String(shown).slice(0, 2000)}`);
      }
      await Bun.sleep(50);
    }
  }

  /** Focuses the element and replaces its value by typing `text` as the keyboard would (input events). */
  async fill(selector: string, text: string): Promise<void> {
    await this.evaluate(`(() => { const e = document.querySelector(${JSON.stringify(selector)});
      if (e === null) throw new Error("no element " + ${JSON.stringify(selector)});
      e.focus(); e.select?.(); return true; })()`);
    await this.#send("Input.dispatchKeyEvent", {
      type: "keyDown",
      key: "Backspace",
      code: "Backspace",
      windowsVirtualKeyCode: 8,
    });
    await this.#send("Input.dispatchKeyEvent", {
      type: "keyUp",
      key: "Backspace",
      code: "Backspace",
      windowsVirtualKeyCode: 8,
    });
    if (text !== "") await this.#send("Input.insertText", { text });
  }

  /** A real key press (keyDown, char, keyUp) on the focused element: "Enter" or "Tab", with Ctrl held if asked. */
  async press(key: "Enter" | "Tab", options: { ctrl?: boolean } = {}): Promise<void> {
    const code = key === "Enter" ? 13 : 9;
    const text = key === "Enter" ? "\r" : "";
    // The protocol's modifier bits: 2 is Ctrl.
    const modifiers = options.ctrl === true ? 2 : 0;
    const base = { key, code: key, windowsVirtualKeyCode: code, modifiers };
    await this.#send("Input.dispatchKeyEvent", { type: "rawKeyDown", ...base });
    if (text !== "") await this.#send("Input.dispatchKeyEvent", { type: "char", ...base, text });
    await this.#send("Input.dispatchKeyEvent", { type: "keyUp", ...base });
  }

  /** Clicks the element's centre with the mouse (it must be visible). */
  async click(selector: string): Promise<void> {
    const box = await this.evaluate<{ x: number; y: number } | null>(`(() => {
      const e = document.querySelector(${JSON.stringify(selector)});
      if (e === null) return null;
      e.scrollIntoView({ block: "center" });
      const r = e.getBoundingClientRect();
      return { x: r.left + r.width / 2, y: r.top + r.height / 2 };
    })()`);
    if (box === null) throw new Error(`click: no element ${selector}`);
    for (const type of ["mousePressed", "mouseReleased"]) {
      await this.#send("Input.dispatchMouseEvent", { type, x: box.x, y: box.y, button: "left", clickCount: 1 });
    }
  }

  /** Saves a PNG of the whole page to `path`. */
  async screenshot(path: string): Promise<void> {
    const { data } = (await this.#send("Page.captureScreenshot", { format: "png", captureBeyondViewport: true })) as {
      data: string;
    };
    writeFileSync(path, Buffer.from(data, "base64"));
  }
}
