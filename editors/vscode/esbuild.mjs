// One bundle for the extension (vscode is provided by the host); with
// --tests, one bundle per test file under out/test for `node --test`.
import * as esbuild from 'esbuild';
import * as fs from 'node:fs';

const production = process.argv.includes('--production');
const tests = process.argv.includes('--tests');

const common = { bundle: true, platform: 'node', target: 'node20', format: 'cjs', logLevel: 'warning' };

await esbuild.build({
  ...common,
  entryPoints: ['src/extension.ts'],
  outfile: 'out/extension.js',
  external: ['vscode'],
  minify: production,
  sourcemap: !production,
});

if (tests) {
  const entryPoints = fs.readdirSync('test').filter((f) => f.endsWith('.test.ts')).map((f) => `test/${f}`);
  fs.rmSync('out/test', { recursive: true, force: true });
  await esbuild.build({ ...common, entryPoints, outdir: 'out/test', external: ['vscode'], sourcemap: true });
}
