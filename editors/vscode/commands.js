// The command lines the extension runs, kept free of the `vscode` module so Node tests can check them.
'use strict';

const path = require('path');

/** The executable `noma build` writes for a file: next to it, without `.noma` (`.exe` on Windows). */
function defaultOutput(file, platform = process.platform) {
  const parsed = path.parse(file);
  const base = parsed.ext === '.noma' ? parsed.name : parsed.base + '.out';
  const out = path.join(parsed.dir, base);
  return platform === 'win32' ? out + '.exe' : out;
}

/** argv of `noma run FILE`. */
function runArgs(command, dtype, file) {
  return [command, '--dtype', dtype, 'run', file];
}

/** argv of `noma build FILE -o OUTPUT` (the -o that the original extension left out). */
function buildArgs(command, dtype, file, output) {
  return [command, '--dtype', dtype, 'build', file, '-o', output];
}

/** argv of the language server. */
function serverArgs(command, dtype) {
  return { command, args: ['--dtype', dtype, 'lsp'] };
}

/** One argv as a shell command line (POSIX sh quoting, or cmd/PowerShell double quotes on Windows). */
function shellLine(argv, platform = process.platform) {
  const quote = platform === 'win32'
    ? (a) => (/^[\w.\/\\:-]+$/.test(a) ? a : '"' + a.replace(/"/g, '""') + '"')
    : (a) => (/^[\w.\/:=-]+$/.test(a) ? a : "'" + a.replace(/'/g, "'\\''") + "'");
  return argv.map(quote).join(' ');
}

module.exports = { defaultOutput, runArgs, buildArgs, serverArgs, shellLine };
