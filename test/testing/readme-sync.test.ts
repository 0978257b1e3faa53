import fs from 'node:fs';
import path from 'node:path';
import { expect, it } from 'vitest';

const root = path.resolve(import.meta.dirname, '../..');

it('the README shows the toolkit example exactly as the project runs it', () => {
  const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8');
  const m = /<!-- example:start -->\n```ts\n([\s\S]*?)```\n<!-- example:end -->/.exec(readme);
  expect(m, 'README has the example block').not.toBeNull();
  expect(m![1]).toBe(fs.readFileSync(path.join(root, 'test/testing/readme-example.test.ts'), 'utf8'));
});
