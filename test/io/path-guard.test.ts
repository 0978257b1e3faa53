/**
 * path-guard: names found in metadata never reach outside their directory unless
 * the user named the path, and the answer to a hostile name does not depend on
 * whether the file it points at exists (so metadata cannot probe the host).
 * Real directories, real symlinks.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isDeltaDiskError } from '../../lib/errors.js';
import { nodeFileSystem } from '../../lib/io/node-file-system.js';
import { isPlainName, memberPath, resolveReference } from '../../lib/io/path-guard.js';
import { tempDir } from '../helpers/temp-dir.js';

let root: string;
let cleanup: () => void;
/** The disk's directory. */
let dir: string;
/** A directory outside it, holding `secret` (exists) and not `missing`. */
let outside: string;

beforeEach(() => {
  ({ dir: root, cleanup } = tempDir('deltadisk-pathguard-'));
  root = fs.realpathSync(root);
  dir = path.join(root, 'vm');
  outside = path.join(root, 'elsewhere');
  fs.mkdirSync(dir);
  fs.mkdirSync(outside);
  fs.writeFileSync(path.join(outside, 'secret'), 'top secret');
  fs.writeFileSync(path.join(dir, 'base.raw'), 'base');
});
afterEach(() => cleanup());

interface Answer {
  code: string;
  message: string;
}

/** The outcome of resolving `ref`, with the reference itself masked out of the message. */
async function answer(ref: string, allow: string[] = []): Promise<Answer> {
  try {
    return { code: 'OK', message: await resolveReference(nodeFileSystem, dir, ref, 'base image', allow) };
  } catch (err) {
    if (!isDeltaDiskError(err)) throw err;
    return { code: err.code, message: err.message.split(JSON.stringify(ref)).join('<ref>') };
  }
}

describe('isPlainName and memberPath', () => {
  it('accept single plain components', () => {
    for (const n of ['disk-000001.delta', 'a', '.hidden', 'with space', 'ünïcode', '...', 'x'.repeat(255)]) {
      expect(isPlainName(n), n).toBe(true);
    }
  });

  it('refuse separators, dots, NUL, control characters, and names over 255 bytes', () => {
    for (const n of ['', '.', '..', 'a/b', '/abs', 'a\\b', 'nul\0', 'line\nbreak', 'esc\u001b', 'del\u007f', 'x'.repeat(256), '€'.repeat(86)]) {
      expect(isPlainName(n), JSON.stringify(n)).toBe(false);
    }
  });

  it('memberPath joins a plain name and refuses anything else with UNSAFE_PATH', () => {
    expect(memberPath(dir, 'disk-000001.delta', 'delta')).toBe(path.join(dir, 'disk-000001.delta'));
    for (const n of ['../x', 'a/b', '..']) {
      expect(() => memberPath(dir, n, 'delta')).toThrow(expect.objectContaining({ code: 'UNSAFE_PATH' }));
    }
  });
});

describe('resolveReference inside the directory', () => {
  it('a plain name resolves to the real path of the file', async () => {
    expect(await answer('base.raw')).toEqual({ code: 'OK', message: path.join(dir, 'base.raw') });
  });

  it('a relative path into a subdirectory, and an absolute path inside, are fine', async () => {
    fs.mkdirSync(path.join(dir, 'images'));
    fs.writeFileSync(path.join(dir, 'images', 'b.raw'), 'b');
    expect((await answer('images/b.raw')).code).toBe('OK');
    expect((await answer('images/../base.raw')).code).toBe('OK');
    expect((await answer(path.join(dir, 'base.raw'))).code).toBe('OK');
  });

  it('a symlink to a file inside is followed', async () => {
    fs.symlinkSync('base.raw', path.join(dir, 'alias.raw'));
    expect(await answer('alias.raw')).toEqual({ code: 'OK', message: path.join(dir, 'base.raw') });
  });

  it('a missing file inside is NOT_FOUND', async () => {
    expect((await answer('nope.raw')).code).toBe('NOT_FOUND');
  });

  it('a directory or a FIFO is not a regular file: UNSAFE_PATH', async () => {
    fs.mkdirSync(path.join(dir, 'sub'));
    expect((await answer('sub')).code).toBe('UNSAFE_PATH');
    execFileSync('mkfifo', [path.join(dir, 'fifo')]);
    expect((await answer('fifo')).code).toBe('UNSAFE_PATH');
  });
});

describe('resolveReference outside the directory', () => {
  it('a relative path leading out is UNSAFE_PATH, the same answer whether the target exists or not', async () => {
    const exists = await answer('../elsewhere/secret');
    const missing = await answer('../elsewhere/missing');
    expect(exists.code).toBe('UNSAFE_PATH');
    expect(missing).toEqual(exists);
  });

  it('an absolute path outside is UNSAFE_PATH, exists or not', async () => {
    expect((await answer(path.join(outside, 'secret'))).code).toBe('UNSAFE_PATH');
    expect((await answer('/etc/passwd')).code).toBe('UNSAFE_PATH');
    expect((await answer('/nonexistent/x')).code).toBe('UNSAFE_PATH');
  });

  it('a symlink leading out is UNSAFE_PATH', async () => {
    fs.symlinkSync(path.join(outside, 'secret'), path.join(dir, 'link'));
    expect((await answer('link')).code).toBe('UNSAFE_PATH');
  });

  it('a dangling symlink gets the same answer as one leading out to an existing file', async () => {
    fs.symlinkSync(path.join(outside, 'secret'), path.join(dir, 'link'));
    const toExisting = await answer('link');
    fs.unlinkSync(path.join(dir, 'link'));
    fs.symlinkSync(path.join(outside, 'missing'), path.join(dir, 'link'));
    const dangling = await answer('link');
    expect(dangling.code).toBe('UNSAFE_PATH');
    expect(dangling).toEqual(toExisting);
  });

  it('a symlinked directory leading out: the same answer whether the file behind it exists or not', async () => {
    fs.symlinkSync(outside, path.join(dir, 'sub'));
    const exists = await answer('sub/secret');
    const missing = await answer('sub/missing');
    expect(exists.code).toBe('UNSAFE_PATH');
    expect(missing).toEqual(exists);
  });

  it('a symlink cycle is refused, not looped on', async () => {
    fs.symlinkSync('b', path.join(dir, 'a'));
    fs.symlinkSync('a', path.join(dir, 'b'));
    expect((await answer('a')).code).toBe('UNSAFE_PATH');
  });
});

describe('resolveReference with allowPaths (paths the user named)', () => {
  const secret = () => path.join(outside, 'secret');

  it('naming the file allows it', async () => {
    expect(await answer(secret(), [secret()])).toEqual({ code: 'OK', message: secret() });
    expect((await answer('../elsewhere/secret', [secret()])).code).toBe('OK');
  });

  it('naming a directory allows what lies below it', async () => {
    expect((await answer(secret(), [outside])).code).toBe('OK');
    expect((await answer(secret(), [root])).code).toBe('OK');
  });

  it('naming a sibling does not allow the file', async () => {
    fs.writeFileSync(path.join(outside, 'other'), 'x');
    expect((await answer(secret(), [path.join(outside, 'other')])).code).toBe('UNSAFE_PATH');
    expect((await answer(secret(), [`${outside}-not`])).code).toBe('UNSAFE_PATH');
  });

  it('a symlink inside leading to an allowed file is followed', async () => {
    fs.symlinkSync(secret(), path.join(dir, 'link'));
    expect((await answer('link', [outside])).code).toBe('OK');
  });

  it('an allowed directory named through a symlink still counts', async () => {
    fs.symlinkSync(outside, path.join(root, 'alias'));
    expect((await answer(path.join(root, 'alias', 'secret'), [path.join(root, 'alias')])).code).toBe('OK');
  });

  it('an allowed file that does not exist is NOT_FOUND', async () => {
    expect((await answer(path.join(outside, 'missing'), [outside])).code).toBe('NOT_FOUND');
  });

  it('an allowed device is still not a regular file', async () => {
    expect((await answer('/dev/null', ['/dev/null'])).code).toBe('UNSAFE_PATH');
  });
});

describe('resolveReference refuses names that are not plain paths', () => {
  it('protocol prefixes (json:, nbd:, file:) are never protocols, even if such a file exists', async () => {
    fs.writeFileSync(path.join(dir, 'nbd:x'), 'x');
    for (const ref of ['json:{"file.driver":"file","file.filename":"/etc/passwd"}', 'nbd://host/export', 'nbd:x', 'file:base.raw', 'http://x/y']) {
      expect((await answer(ref)).code, ref).toBe('UNSAFE_PATH');
      expect((await answer(ref, [root])).code, `${ref} (allowed)`).toBe('UNSAFE_PATH');
    }
  });

  it('empty, control characters and over-long references', async () => {
    for (const ref of ['', 'base\0.raw', 'a\nb', 'x/'.repeat(2049)]) {
      expect((await answer(ref)).code, JSON.stringify(ref.slice(0, 20))).toBe('UNSAFE_PATH');
    }
  });
});

describe('resolveReference for a path the user named that does not exist', () => {
  it('is NOT_FOUND even when its directory is missing too', async () => {
    const p = path.join(root, 'no-such-dir', 'base.raw');
    expect((await resolveReference(nodeFileSystem, path.dirname(p), 'base.raw', 'base image', [p]).catch((e: unknown) => e)) as object).toMatchObject({
      code: 'NOT_FOUND',
    });
  });
});
