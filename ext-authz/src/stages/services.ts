/**
 * A small registry for components that must survive a config reload (a
 * Redis connection, a certificate cache). Stages ask for them by key; the
 * first asker creates, later ones share. Closed on shutdown.
 */
export interface Closeable {
  close(): void | Promise<void>;
}

export class ServiceRegistry {
  private readonly services = new Map<string, unknown>();
  private readonly closers: Array<() => void | Promise<void>> = [];

  get<T>(key: string, create: () => T): T {
    if (this.services.has(key)) return this.services.get(key) as T;
    const created = create();
    this.services.set(key, created);
    if (created && typeof (created as Partial<Closeable>).close === 'function') {
      this.closers.push(() => (created as unknown as Closeable).close());
    }
    return created;
  }

  peek<T>(key: string): T | undefined {
    return this.services.get(key) as T | undefined;
  }

  async closeAll(): Promise<void> {
    const closers = this.closers.splice(0).reverse();
    for (const close of closers) {
      try {
        await close();
      } catch {
        // Closing is best effort during shutdown; one failure must not stop the rest.
      }
    }
    this.services.clear();
  }
}
