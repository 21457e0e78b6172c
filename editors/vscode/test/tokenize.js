// Tokenises NOMA text with the extension's TextMate grammar (vscode-textmate + vscode-oniguruma,
// the engine VS Code uses).
//   node test/tokenize.js --check FILE...   compare with test/snapshots/NAME.snap (exit 1 on a difference)
//   node test/tokenize.js --update FILE...  (re)write those snapshots (review the diff before committing)
//   node test/tokenize.js --scopes          stdin: a JSON list of lines; stdout: per line, [text, scopes] tokens
'use strict';

const fs = require('fs');
const path = require('path');
const vsctm = require('vscode-textmate');
const oniguruma = require('vscode-oniguruma');

const ROOT = path.join(__dirname, '..');
const GRAMMAR = path.join(ROOT, 'syntaxes', 'noma.tmLanguage.json');
const SNAPSHOTS = path.join(__dirname, 'snapshots');

async function loadGrammar() {
  const wasm = fs.readFileSync(require.resolve('vscode-oniguruma/release/onig.wasm'));
  await oniguruma.loadWASM(wasm.buffer.slice(wasm.byteOffset, wasm.byteOffset + wasm.byteLength));
  const registry = new vsctm.Registry({
    onigLib: Promise.resolve({
      createOnigScanner: (patterns) => new oniguruma.OnigScanner(patterns),
      createOnigString: (s) => new oniguruma.OnigString(s),
    }),
    loadGrammar: async (scopeName) => {
      if (scopeName !== 'source.noma') return null;
      return vsctm.parseRawGrammar(fs.readFileSync(GRAMMAR, 'utf8'), GRAMMAR);
    },
  });
  return registry.loadGrammar('source.noma');
}

/** [[text, scopes-without-source.noma], ...] for each line. */
function tokenizeLines(grammar, lines) {
  let state = vsctm.INITIAL;
  return lines.map((line) => {
    const result = grammar.tokenizeLine(line, state);
    state = result.ruleStack;
    return result.tokens.map((t) => [line.slice(t.startIndex, t.endIndex),
      t.scopes.filter((s) => s !== 'source.noma').join(' ')]);
  });
}

function render(grammar, text) {
  const lines = text.replace(/\n$/, '').split('\n');
  const out = [];
  tokenizeLines(grammar, lines).forEach((tokens, i) => {
    out.push(`${i + 1}: ${lines[i]}`);
    for (const [tok, scopes] of tokens) {
      if (!tok.trim() && !scopes) continue;
      out.push(`    ${JSON.stringify(tok)} ${scopes || '-'}`);
    }
  });
  return out.join('\n') + '\n';
}

function snapshotPath(file) {
  return path.join(SNAPSHOTS, path.basename(file) + '.snap');
}

async function main() {
  const [mode, ...files] = process.argv.slice(2);
  const grammar = await loadGrammar();
  if (mode === '--scopes') {
    const lines = JSON.parse(fs.readFileSync(0, 'utf8'));
    process.stdout.write(JSON.stringify(tokenizeLines(grammar, lines)));
    return 0;
  }
  if (mode !== '--check' && mode !== '--update') {
    console.error('usage: tokenize.js --check|--update FILE... | --scopes');
    return 2;
  }
  let failed = 0;
  for (const file of files) {
    const got = render(grammar, fs.readFileSync(file, 'utf8'));
    const snap = snapshotPath(file);
    if (mode === '--update') {
      fs.mkdirSync(SNAPSHOTS, { recursive: true });
      fs.writeFileSync(snap, got);
      console.log(`wrote ${path.relative(ROOT, snap)}`);
      continue;
    }
    if (!fs.existsSync(snap)) {
      console.error(`${file}: no snapshot ${path.relative(ROOT, snap)} (run --update and review it)`);
      failed++;
      continue;
    }
    const want = fs.readFileSync(snap, 'utf8');
    if (got !== want) {
      const g = got.split('\n');
      const w = want.split('\n');
      const i = g.findIndex((line, k) => line !== w[k]);
      console.error(`${file}: tokens differ from ${path.relative(ROOT, snap)} at snapshot line ${i + 1}:\n`
        + `  snapshot: ${w[i]}\n  now:      ${g[i]}`);
      failed++;
    } else {
      console.log(`${file}: ok`);
    }
  }
  return failed ? 1 : 0;
}

main().then((code) => process.exit(code), (err) => { console.error(err); process.exit(1); });
