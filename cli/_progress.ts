/**
 * The progress display of `fetch` on stderr: a bar redrawn in place on a terminal, a few plain
 * lines (start, every quarter, done) otherwise.
 *
 * @module
 */
const MiB = 1024 * 1024;

/**
 * Download progress for people, written to `stderr`.
 *
 * @example
 * ```ts
 * import { FetchProgress } from "./_progress.ts";
 * import assert from "node:assert/strict";
 *
 * let text = "";
 * const progress = new FetchProgress((chunk) => text += chunk, { tty: false });
 * progress.start("kernel", 4 * 1024 * 1024, ["http://127.0.0.1:8080/stable/x86_64/kernel"]);
 * progress.update("kernel", 2 * 1024 * 1024, 4 * 1024 * 1024);
 * progress.done("kernel", "downloaded", "sha256:ab");
 * assert.match(text, /^Fetching kernel \(4\.0 MiB\) from http:/);
 * assert.match(text, /^kernel: 50% \(2\.0 MiB, /m);
 * assert.match(text, /^kernel: verified sha256:ab$/m);
 * ```
 */
export class FetchProgress {
  #write: (text: string) => void;
  #tty: boolean;
  #started = 0;
  #lastDraw = 0;
  #lastQuarter = 0;
  #drawn = false;

  /** Progress given to `write` (stderr); `tty`: draw a bar rather than lines. */
  constructor(write: (text: string) => void, options: { tty: boolean }) {
    this.#write = write;
    this.#tty = options.tty;
  }

  /** An artifact's download begins. */
  start(name: string, size: number, sources: string[]): void {
    this.clear();
    this.#started = performance.now();
    this.#lastQuarter = 0;
    if (!this.#tty) {
      this.#line(`Fetching ${name} (${(size / MiB).toFixed(1)} MiB) from ${sources.join(", ")}`);
    }
  }

  /** `received` of `total` bytes of `name` are in. */
  update(name: string, received: number, total: number): void {
    const now = performance.now();
    const seconds = (now - this.#started) / 1000;
    const rate = seconds > 0 ? received / MiB / seconds : 0;
    const fraction = total === 0 ? 1 : received / total;
    if (this.#tty) {
      if (now - this.#lastDraw < 100 && received < total) return;
      this.#lastDraw = now;
      const width = 30;
      const filled = Math.round(fraction * width);
      const bar = "#".repeat(filled) + "-".repeat(width - filled);
      this.#write(
        `\r\x1b[K${name} [${bar}] ${(fraction * 100).toFixed(0).padStart(3)}% ${
          (received / MiB).toFixed(1)
        }/${(total / MiB).toFixed(1)} MiB ${rate.toFixed(1)} MiB/s`,
      );
      this.#drawn = true;
      return;
    }
    const quarter = Math.floor(fraction * 4);
    if (quarter > this.#lastQuarter && quarter < 4) {
      this.#lastQuarter = quarter;
      this.#line(
        `${name}: ${quarter * 25}% (${(received / MiB).toFixed(1)} MiB, ${rate.toFixed(1)} MiB/s)`,
      );
    }
  }

  /** A warning (a source failed, ...), on a line of its own. */
  warn(message: string): void {
    this.clear();
    this.#line(`Warning: ${message}`);
  }

  /** `name` is in place: verified now, or already present. */
  done(name: string, status: string, hash: string): void {
    this.clear();
    this.#line(`${name}: ${status === "present" ? "already present" : "verified"} ${hash}`);
  }

  /** Remove the bar, if one is drawn. */
  clear(): void {
    if (this.#drawn) {
      this.#write("\r\x1b[K");
      this.#drawn = false;
    }
  }

  #line(text: string): void {
    this.#write(text + "\n");
  }
}
