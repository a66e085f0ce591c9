import { randomBytes } from 'node:crypto';
import { access, mkdir, open, readFile, rename, rm, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { AppError } from '../errors.ts';
import { assertPositiveSeconds, assertValidStorageKey, signFileUrl } from './signing.ts';
import type { Storage } from './types.ts';

export interface LocalStorageOptions {
  /** Directory holding the files; created on first write. */
  dir: string;
  /** Secret for the HMAC in file URLs; the API verifies it with verifyFileSignature. */
  signingSecret: string;
  /** Clock for URL expiry, in milliseconds; tests pass a fixed one. */
  now?: () => number;
}

/** File-system calls made so far by puts, for the overhead bench's per-image budget and tests. */
export interface LocalStorageStats {
  /** mkdir calls (recursive); a directory this storage made or saw is not asked for again. */
  mkdirs: number;
  /** fdatasync of a written file. */
  fileSyncs: number;
  /** fsync of a directory: after renames into it (shared by those that wait together) and new directories' parents. */
  dirSyncs: number;
  /** Files renamed to another key by move() (no write, no fdatasync). */
  moves: number;
}

export type LocalStorage = Storage & {
  readonly driver: 'local';
  move(from: string, to: string): Promise<void>;
  /** Absolute path of the file behind `key` (the key is validated first). */
  resolvePath(key: string): string;
  stats(): LocalStorageStats;
};

/** Directories remembered as existing; past this many the oldest are forgotten (and asked for again). */
const KNOWN_DIRS_MAX = 4096;

export function createLocalStorage(options: LocalStorageOptions): LocalStorage {
  const root = path.resolve(options.dir);
  const now = options.now ?? Date.now;
  if (options.signingSecret.length === 0) {
    throw new AppError('invalid_input', 'Local storage needs a non-empty signingSecret');
  }

  function resolvePath(key: string): string {
    assertValidStorageKey(key);
    const filePath = path.resolve(root, key);
    // Key validation already rules this out; checked again because escaping root would be a file disclosure.
    if (!filePath.startsWith(root + path.sep)) {
      throw new AppError('invalid_input', 'Invalid storage key: it points outside the storage directory');
    }
    return filePath;
  }

  const stats: LocalStorageStats = { mkdirs: 0, fileSyncs: 0, dirSyncs: 0, moves: 0 };
  // A task's images and its staged files share a directory: a put asks for it once, not each
  // time (a mkdir that finds it is a trip through libuv's pool and a failed syscall). Darkroom
  // never removes directories; one removed behind its back is made again when a put finds it gone.
  // The promise is the directory made durable: concurrent puts into a new one wait for it.
  const knownDirs = new Map<string, Promise<void>>();

  function ensureDir(dir: string): Promise<void> {
    const known = knownDirs.get(dir);
    if (known) return known;
    const made = makeDir(dir);
    if (knownDirs.size >= KNOWN_DIRS_MAX) knownDirs.delete(knownDirs.keys().next().value!);
    knownDirs.set(dir, made);
    made.catch(() => {
      if (knownDirs.get(dir) === made) knownDirs.delete(dir);
    });
    return made;
  }

  /**
   * mkdir -p, then the entry of each directory it created synced in its parent: a new
   * directory's name is durable only once its parent is fsynced (Linux fsync(2): "an explicit
   * fsync() on a file descriptor for the directory is also needed").
   */
  async function makeDir(dir: string): Promise<void> {
    stats.mkdirs++;
    const first = await mkdir(dir, { recursive: true });
    if (first === undefined) return;
    const parents: string[] = [];
    for (let d = dir; ; d = path.dirname(d)) {
      parents.push(path.dirname(d));
      if (d === first || d === path.dirname(d)) break;
    }
    await Promise.all(parents.map(syncDir));
  }

  // Group commit of directory fsyncs. A put's rename is covered by an fsync of its directory that
  // starts after the rename. A put that has renamed joins the directory's next fsync, which waits
  // for the puts into that directory already writing when it was opened (they join it when they
  // have renamed, or leave it when they fail) and for the fsync before it: a store job's original
  // and thumbnail, written at once, share one. Puts that start later do not hold it back.
  interface DirBatch {
    /** Puts with a number up to this one were under way when the batch opened. */
    cutoff: number;
    done: Promise<void>;
    resolve: () => void;
    reject: (error: unknown) => void;
  }
  interface DirState {
    /** Puts writing into the directory (opened, not yet renamed), by number. */
    writers: Set<number>;
    next: DirBatch | undefined;
    running: boolean;
  }
  const dirStates = new Map<string, DirState>();
  let putNumber = 0;

  function dirState(dir: string): DirState {
    let state = dirStates.get(dir);
    if (!state) {
      state = { writers: new Set(), next: undefined, running: false };
      dirStates.set(dir, state);
    }
    return state;
  }

  function syncDir(dir: string): Promise<void> {
    const state = dirState(dir);
    if (!state.next) {
      let resolve!: () => void;
      let reject!: (error: unknown) => void;
      const done = new Promise<void>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      state.next = { cutoff: putNumber, done, resolve, reject };
    }
    const { done } = state.next;
    startSync(dir);
    return done;
  }

  function startSync(dir: string): void {
    const state = dirStates.get(dir);
    if (!state) return;
    const batch = state.next;
    if (!batch) {
      if (!state.running && state.writers.size === 0) dirStates.delete(dir);
      return;
    }
    if (state.running) return;
    for (const writer of state.writers) if (writer <= batch.cutoff) return;
    state.next = undefined;
    state.running = true;
    fsyncDirectory(dir)
      .then(
        () => {
          stats.dirSyncs++;
          batch.resolve();
        },
        (error: unknown) => batch.reject(error),
      )
      .finally(() => {
        state.running = false;
        startSync(dir);
      });
  }

  /** Counts a put as writing into its directory until it has renamed (or failed). */
  function beginWrite(dir: string): () => void {
    const number = ++putNumber;
    dirState(dir).writers.add(number);
    return () => {
      dirStates.get(dir)?.writers.delete(number);
      startSync(dir);
    };
  }

  async function openNew(tempPath: string): Promise<FileHandle> {
    const dir = path.dirname(tempPath);
    await ensureDir(dir);
    try {
      return await open(tempPath, 'wx');
    } catch (error) {
      if ((error as { code?: unknown } | null)?.code !== 'ENOENT') throw error;
      knownDirs.delete(dir);
      await ensureDir(dir);
      return await open(tempPath, 'wx');
    }
  }

  /** rename(2); ENOENT is a missing source (file_not_found) or a destination directory removed behind our back (made again). */
  async function renameInto(fromPath: string, toPath: string, fromKey: string): Promise<void> {
    try {
      await rename(fromPath, toPath);
      return;
    } catch (error) {
      if ((error as { code?: unknown } | null)?.code !== 'ENOENT') throw error;
      if (!(await exists(fromPath)))
        throw new AppError('file_not_found', `No stored file ${fromKey}`, { cause: error });
    }
    const dir = path.dirname(toPath);
    knownDirs.delete(dir);
    await ensureDir(dir);
    try {
      await rename(fromPath, toPath);
    } catch (error) {
      if (isMissingFile(error))
        throw new AppError('file_not_found', `No stored file ${fromKey}`, { cause: error });
      throw error;
    }
  }

  return {
    driver: 'local',
    resolvePath,
    stats: () => ({ ...stats }),

    async put(key: string, data: Buffer): Promise<void> {
      const filePath = resolvePath(key);
      const dir = path.dirname(filePath);
      const tempPath = `${filePath}.${randomBytes(6).toString('hex')}.tmp`;
      await ensureDir(dir);
      const endWrite = beginWrite(dir);
      try {
        const handle = await openNew(tempPath);
        try {
          await handle.writeFile(data);
          await handle.datasync();
          stats.fileSyncs++;
        } catch (error) {
          await handle.close();
          await rm(tempPath, { force: true });
          throw error;
        }
        await handle.close();
        try {
          await rename(tempPath, filePath);
        } catch (error) {
          await rm(tempPath, { force: true });
          throw error;
        }
      } catch (error) {
        endWrite();
        throw error;
      }
      // The new name is durable once the directory is synced: the caller records the key in the
      // database after this returns, and a crash must not leave it pointing at nothing. Joined
      // before this put stops counting as a writer, so the batch cannot start without it.
      const synced = syncDir(dir);
      endWrite();
      await synced;
    },

    /**
     * rename(2) within the root's file system, then the destination directory synced as after a
     * put: the file's data was synced when it was put, and a rename moves the entry, not the data.
     * The source directory is not synced: the removal of its entry needs no more durability than
     * delete() gives (none), and on ext4 and XFS a rename of both entries is one journal
     * transaction (ext4_rename in fs/ext4/namei.c starts one handle; xfs_rename in
     * fs/xfs/xfs_inode.c one transaction), which the destination's fsync commits. After a crash
     * a caller finds the file at `to` or still at `from` (src/worker/store-images.ts).
     */
    async move(from: string, to: string): Promise<void> {
      const fromPath = resolvePath(from);
      const toPath = resolvePath(to);
      const dir = path.dirname(toPath);
      await ensureDir(dir);
      const endWrite = beginWrite(dir);
      try {
        await renameInto(fromPath, toPath, from);
      } catch (error) {
        endWrite();
        throw error;
      }
      stats.moves++;
      const synced = syncDir(dir);
      endWrite();
      await synced;
    },

    async get(key: string): Promise<Buffer> {
      const filePath = resolvePath(key);
      try {
        return await readFile(filePath);
      } catch (error) {
        if (isMissingFile(error))
          throw new AppError('file_not_found', `No stored file ${key}`, { cause: error });
        throw error;
      }
    },

    async delete(key: string): Promise<void> {
      await rm(resolvePath(key), { force: true });
    },

    async url(key: string, expiresInSeconds: number): Promise<string> {
      assertPositiveSeconds(expiresInSeconds);
      const expiresAt = Math.floor(now() / 1000) + Math.ceil(expiresInSeconds);
      return signFileUrl(key, expiresAt, options.signingSecret);
    },
  };
}

async function fsyncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function exists(filePath: string): Promise<boolean> {
  try {
    await access(filePath);
    return true;
  } catch {
    return false;
  }
}

function isMissingFile(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR';
}
