// The command lines of Run File and Build Executable (node test/commands.test.js; exit 1 on a failure).
'use strict';

const assert = require('assert');
const { defaultOutput, runArgs, buildArgs, serverArgs, shellLine } = require('../commands');

assert.deepStrictEqual(runArgs('noma', 'f64', '/w/a b.noma'), ['noma', '--dtype', 'f64', 'run', '/w/a b.noma']);
// the original extension's build command failed: it left out -o
assert.deepStrictEqual(buildArgs('noma', 'f32', '/w/x.noma', '/w/x'),
  ['noma', '--dtype', 'f32', 'build', '/w/x.noma', '-o', '/w/x']);
assert.strictEqual(defaultOutput('/w/grow_xor.noma', 'linux'), '/w/grow_xor');
assert.strictEqual(defaultOutput('/w/prog.txt', 'linux'), '/w/prog.txt.out');
assert.strictEqual(defaultOutput('/w/grow_xor.noma', 'win32').endsWith('grow_xor.exe'), true);
assert.deepStrictEqual(serverArgs('/opt/bin/noma', 'f64'), { command: '/opt/bin/noma', args: ['--dtype', 'f64', 'lsp'] });
assert.strictEqual(shellLine(['noma', 'run', "/w/it's here.noma"], 'linux'), "noma run '/w/it'\\''s here.noma'");
assert.strictEqual(shellLine(['noma', 'build', 'C:\\w\\a b.noma', '-o', 'C:\\w\\a b.exe'], 'win32'),
  'noma build "C:\\w\\a b.noma" -o "C:\\w\\a b.exe"');
console.log('commands: ok');
