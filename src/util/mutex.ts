// A promise-chain mutex: one critical section at a time per key, FIFO, and no entry left for an idle key.
// Not async-mutex: it has no keyed mutex, and a Map of its Mutex objects would need this same cleanup.
export class KeyedMutex {
  private readonly tails = new Map<string | number, Promise<unknown>>();

  async run<T>(key: string | number, fn: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const tail = prev.then(() => mine);
    this.tails.set(key, tail);
    await prev.catch(() => undefined);
    try {
      return await fn();
    } finally {
      release();
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }
}
