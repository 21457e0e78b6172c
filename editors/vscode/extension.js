// The NOMA extension: starts `noma lsp` (the installed `noma` command) and adds Run File / Build Executable.
'use strict';

const vscode = require('vscode');
const { LanguageClient, TransportKind } = require('vscode-languageclient/node');
const { defaultOutput, runArgs, buildArgs, serverArgs, shellLine } = require('./commands');

let client = null;

function settings() {
  const c = vscode.workspace.getConfiguration('noma');
  return { command: c.get('command', 'noma'), dtype: c.get('dtype', 'f64'), server: c.get('languageServer.enabled', true) };
}

async function startServer(context) {
  const s = settings();
  if (!s.server) return;
  const exe = serverArgs(s.command, s.dtype);
  const serverOptions = { command: exe.command, args: exe.args, transport: TransportKind.stdio };
  const clientOptions = {
    documentSelector: [{ scheme: 'file', language: 'noma' }, { scheme: 'untitled', language: 'noma' }],
    outputChannelName: 'NOMA Language Server',
  };
  client = new LanguageClient('noma', 'NOMA Language Server', serverOptions, clientOptions);
  try {
    await client.start();
  } catch (err) {
    vscode.window.showErrorMessage(`NOMA: could not start \`${s.command} lsp\` (is NOMA installed and on PATH? `
      + `see the setting noma.command): ${err.message || err}`);
  }
  context.subscriptions.push({ dispose: () => client && client.stop() });
}

async function activeNomaFile() {
  const editor = vscode.window.activeTextEditor;
  if (!editor || editor.document.languageId !== 'noma') {
    vscode.window.showErrorMessage('NOMA: open a .noma file first');
    return null;
  }
  if (editor.document.isUntitled) {
    vscode.window.showErrorMessage('NOMA: save the file first');
    return null;
  }
  if (editor.document.isDirty) await editor.document.save();
  return editor.document.uri.fsPath;
}

function terminal() {
  const existing = vscode.window.terminals.find((t) => t.name === 'NOMA');
  return existing || vscode.window.createTerminal({ name: 'NOMA' });
}

function runInTerminal(argv, cwd) {
  const t = terminal();
  t.show(true);
  t.sendText(shellLine(['cd', cwd]));
  t.sendText(shellLine(argv));
}

async function runFile() {
  const file = await activeNomaFile();
  if (!file) return;
  const s = settings();
  runInTerminal(runArgs(s.command, s.dtype, file), require('path').dirname(file));
}

async function buildExecutable() {
  const file = await activeNomaFile();
  if (!file) return;
  const s = settings();
  const output = await vscode.window.showInputBox({
    prompt: 'Executable to write (noma build -o)', value: defaultOutput(file),
  });
  if (!output) return;
  runInTerminal(buildArgs(s.command, s.dtype, file, output), require('path').dirname(file));
}

async function restartServer(context) {
  if (client) await client.stop();
  client = null;
  await startServer(context);
}

function activate(context) {
  context.subscriptions.push(
    vscode.commands.registerCommand('noma.runFile', runFile),
    vscode.commands.registerCommand('noma.buildExecutable', buildExecutable),
    vscode.commands.registerCommand('noma.restartServer', () => restartServer(context)),
  );
  return startServer(context);
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
